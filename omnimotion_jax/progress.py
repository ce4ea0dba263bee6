"""Progress bars and log lines, both switched by the level of the 'omnimotion_jax' logger.

Library code logs with `logging.getLogger(__name__)` and wraps loops in `bar(...)`; nothing
threads a `progress` flag. The package logger is at INFO (bars on) unless a caller lowers it:
`omnimotion-jax --quiet`, the tests, or `quiet()` in a script.
"""

import contextlib
import logging

from tqdm.auto import tqdm

LOGGER = logging.getLogger('omnimotion_jax')
LOGGER.setLevel(logging.INFO)  # Bars on by default; `quiet()` or a caller lowers it.


def enabled() -> bool:
  return LOGGER.isEnabledFor(logging.INFO)


def bar(iterable=None, **kwargs) -> tqdm:
  """A tqdm bar, hidden when the package logger is quieter than INFO."""
  return tqdm(iterable, disable=not enabled(), dynamic_ncols=True, **kwargs)


@contextlib.contextmanager
def quiet():
  """No bars and no INFO lines inside the block (e.g. worker processes, nested stages)."""
  level = LOGGER.level
  LOGGER.setLevel(logging.WARNING)
  try:
    yield
  finally:
    LOGGER.setLevel(level)
