"""Atomic file writes: a temp file in the same folder, then os.replace.

A reader (or a crash) never sees a half-written output; files get the usual umask permissions
(mkstemp alone would leave them 0600).
"""

import contextlib
import os
import tempfile
from pathlib import Path

import numpy as np


def set_default_permissions(path: str | os.PathLike) -> None:
  """chmod to 0o666 minus the umask (mkstemp creates 0o600 files)."""
  umask = os.umask(0)
  os.umask(umask)
  os.chmod(path, 0o666 & ~umask)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = 'wb'):
  """Yields a file object whose content replaces `path` only if the block succeeds."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  handle, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
  try:
    with os.fdopen(handle, mode) as f:
      yield f
    set_default_permissions(tmp)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def write_npz_atomic(path: str | os.PathLike, arrays: dict[str, np.ndarray],
                     compressed: bool = False) -> Path:
  with atomic_open(path) as f:
    (np.savez_compressed if compressed else np.savez)(f, **arrays)
  return Path(path)


def write_npy_atomic(path: str | os.PathLike, array: np.ndarray) -> Path:
  with atomic_open(path) as f:
    np.save(f, array)
  return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
  with atomic_open(path, 'w') as f:
    f.write(text)
  return Path(path)
