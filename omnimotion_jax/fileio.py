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
def atomic_path(path: str | os.PathLike):
  """Yields a temp path beside `path`, with its suffix (tools such as ffmpeg pick the format from
  it); the file replaces `path` only if the block succeeds."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  handle, tmp = tempfile.mkstemp(prefix=f'.{path.stem}.', suffix=path.suffix, dir=path.parent)
  os.close(handle)
  try:
    yield Path(tmp)
    set_default_permissions(tmp)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = 'wb'):
  """Yields a file object whose content replaces `path` only if the block succeeds."""
  with atomic_path(path) as tmp, open(tmp, mode) as f:
    yield f


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
