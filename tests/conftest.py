"""Test configuration: CPU only, small deterministic settings."""

import os
import tempfile

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# Two CPU devices, so batches and data parallelism are tested across devices in this process
# (single-video programs run on the first, as they would with one).
if 'xla_force_host_platform_device_count' not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '')
                             + ' --xla_force_host_platform_device_count=2').strip()

import jax  # noqa: E402
import pytest  # noqa: E402

# The files that compile the most, slowest first (pytest --durations on a cold cache). With
# `make test` (pytest-xdist, whole files per worker, --no-loadscope-reorder) they are handed out
# first, and the many small files fill in after them: longest-first keeps the two workers even.
# The order changes nothing else.
_SLOW_FILES = ('train/test_batch.py', 'train/test_train.py', 'evaluation/test_suite.py',
               'model/test_model.py', 'model/test_surface.py', 'data/nets/test_raft.py',
               'test_track.py', 'data/nets/test_dino.py', 'test_cli.py')


def pytest_collection_modifyitems(items):
  def rank(item):
    path = item.nodeid.split('::')[0]
    return next((k for k, name in enumerate(_SLOW_FILES) if path.endswith(name)),
                len(_SLOW_FILES))
  items.sort(key=rank)  # Stable: the order inside each file is kept.

# Tests compile the same programs on every run; cache them on disk next to the repo, one folder
# per pytest-xdist worker (gw0, gw1, ...), so that parallel workers never write one cache entry
# at the same time.
_CACHE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), '.cache', 'xla',
                      os.environ.get('PYTEST_XDIST_WORKER', 'main'))
jax.config.update('jax_compilation_cache_dir', _CACHE)
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', _CACHE)  # And in the tests' subprocesses.
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)


@pytest.fixture(autouse=True, scope='session')
def _tempfiles_inside_pytest_tmp(tmp_path_factory):
  """Keeps library temp folders under pytest's own tmp tree (which pytest prunes): tfds's
  DatasetInfo.initialize_from_bucket makes an empty mkdtemp() folder per unprepared builder and
  never removes it, 35 of them per test run in /tmp otherwise."""
  previous = tempfile.tempdir
  tempfile.tempdir = str(tmp_path_factory.mktemp('tempfile'))
  yield
  tempfile.tempdir = previous
