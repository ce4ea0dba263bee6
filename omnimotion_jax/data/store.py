"""The preprocessed-video store: one .npz per video with frames and filtered correspondences.

File format (`write_store`; numpy .npz, uncompressed so it loads fast; FORMAT_VERSION = 1):

  frames         uint8   [N, H, W, 3]  RGB frames after stride / max_frames / resize.
  frame_indices  int32   [N]           input (pre-stride) index of each frame.
  pairs          int32   [P, 2]        stored ordered pairs (i, j), sorted; see pairs.py.
  flows          float16 [P, H, W, 2]  (dx, dy) px: pixel p of frame i -> p + flow in frame j
                                       (integer coordinates are pixel centres, x = column).
                                       Gap >= 2 flows are chained + direct (filtering.py).
  cycle          uint8   [P, ceil(H*W/8)]  np.packbits of bool [P, H*W] (row-major pixels):
                                       R, reliable and co-visible in j.
  occluded       uint8   [P, ceil(H*W/8)]  packed G, reliable but occluded in j (gaps 1..2 by
                                       default). Disjoint from cycle.
  counts         uint16  [N, H, W]     per pixel of frame i, the number of stored pairs (i, .)
                                       where it is valid (cycle or occluded).
  pair_counts    int32   [P]           valid (cycle or occluded) pixels per pair.
  meta           str (0-d array)       JSON: format_version, source path, config hash, input
                                       (original) size, processed size, resize / max_side /
                                       stride / max_frames, backend, preset, plan, thresholds.

How training samples pairs and pixels from it: train/sampler.py (the reference's
`loaders/raft.py`). `pair_index[i, j]` is the row of (i, j), -1 if not stored; the banded plan
stores long gaps forward only (i < j), so (j, i) is row pair_index[i, j] used swapped.

`load_store` unpacks masks to bool; `to_device` puts every array on the default jax device with
fixed shapes, so a jitted step can gather from them.
"""

import dataclasses
import json
import os
from pathlib import Path

import jax
import numpy as np

from omnimotion_jax.errors import UserInputError
from omnimotion_jax.fileio import write_npz_atomic

FORMAT_VERSION = 1
STORE_KEYS = ('frames', 'frame_indices', 'pairs', 'flows', 'cycle', 'occluded', 'counts',
              'pair_counts', 'meta')


def pack_masks(masks: np.ndarray) -> np.ndarray:
  """bool [P, H, W] -> uint8 [P, ceil(H*W/8)] (np.packbits over row-major pixels)."""
  return np.packbits(masks.reshape(len(masks), -1), axis=1)


def unpack_masks(packed: np.ndarray, height: int, width: int) -> np.ndarray:
  """uint8 [P, ceil(H*W/8)] -> bool [P, H, W] (inverse of pack_masks)."""
  bits = np.unpackbits(packed, axis=1, count=height * width)
  return bits.reshape(len(packed), height, width).view(bool)


def write_store(path: str | os.PathLike, *, frames: np.ndarray, frame_indices: np.ndarray,
                pairs: np.ndarray, flows: np.ndarray, cycle: np.ndarray, occluded: np.ndarray,
                counts: np.ndarray, pair_counts: np.ndarray, meta: dict) -> Path:
  """Writes a store atomically (format in the module docstring). Masks are bool [P, H, W]."""
  num_frames, height, width = frames.shape[:3]
  num_pairs = len(pairs)
  expected = {'frames': (num_frames, height, width, 3), 'frame_indices': (num_frames,),
              'pairs': (num_pairs, 2), 'flows': (num_pairs, height, width, 2),
              'cycle': (num_pairs, height, width), 'occluded': (num_pairs, height, width),
              'counts': (num_frames, height, width), 'pair_counts': (num_pairs,)}
  given = {'frames': frames, 'frame_indices': frame_indices, 'pairs': pairs, 'flows': flows,
           'cycle': cycle, 'occluded': occluded, 'counts': counts, 'pair_counts': pair_counts}
  for key, shape in expected.items():
    if given[key].shape != shape:
      raise ValueError(f'write_store: {key} has shape {given[key].shape}, expected {shape}')
  meta = dict(meta, format_version=FORMAT_VERSION)
  arrays = {
      # copy=False: the flows can be GBs; do not duplicate arrays already in the right dtype.
      'frames': frames.astype(np.uint8, copy=False),
      'frame_indices': frame_indices.astype(np.int32, copy=False),
      'pairs': pairs.astype(np.int32, copy=False),
      'flows': flows.astype(np.float16, copy=False),
      'cycle': pack_masks(cycle.astype(bool, copy=False)),
      'occluded': pack_masks(occluded.astype(bool, copy=False)),
      'counts': counts.astype(np.uint16, copy=False),
      'pair_counts': pair_counts.astype(np.int32, copy=False),
      'meta': np.array(json.dumps(meta, sort_keys=True, default=str)),
  }
  return write_npz_atomic(path, arrays)


def read_meta(path: str | os.PathLike) -> dict | None:
  """The metadata dict of a store, or None if the file is missing or not a readable store."""
  try:
    with np.load(path, allow_pickle=False) as npz:
      return json.loads(str(npz['meta']))
  except Exception:  # Missing, truncated or foreign file: the caller redoes the work.
    return None


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SequenceData:
  """A loaded store: numpy arrays (load_store) or jax arrays (to_device), same fields.

  Attributes:
    frames: uint8 [N, H, W, 3] RGB.
    frame_indices: int32 [N] input frame index of each frame.
    pairs: int32 [P, 2] ordered pairs (i, j).
    flows: float16 [P, H, W, 2] (dx, dy) px (cast to float32 after gathering).
    cycle: bool [P, H, W] R mask (reliable, co-visible).
    occluded: bool [P, H, W] G mask (reliable, occluded in j).
    counts: uint16 [N, H, W] valid correspondences per pixel.
    pair_counts: int32 [P] valid pixels per pair.
    pair_index: int32 [N, N] row of pair (i, j) in `pairs`, -1 where not stored.
    meta_json: the store's metadata as JSON (static; see `meta`).
  """
  frames: np.ndarray
  frame_indices: np.ndarray
  pairs: np.ndarray
  flows: np.ndarray
  cycle: np.ndarray
  occluded: np.ndarray
  counts: np.ndarray
  pair_counts: np.ndarray
  pair_index: np.ndarray
  meta_json: str = dataclasses.field(metadata={'static': True})

  @property
  def num_frames(self) -> int:
    return self.frames.shape[0]

  @property
  def num_pairs(self) -> int:
    return self.pairs.shape[0]

  @property
  def size(self) -> tuple[int, int]:
    """(H, W) px."""
    return tuple(self.frames.shape[1:3])

  @property
  def meta(self) -> dict:
    return json.loads(self.meta_json)


def input_scale(meta: dict, size: tuple[int, int]) -> tuple[float, float]:
  """(sx, sy): store (model) px per input-video px, from a store's meta and its (H, W)."""
  in_h, in_w = meta.get('input_size', size)
  return size[1] / in_w, size[0] / in_h


def rescale_xy(xy: np.ndarray, sx: float, sy: float) -> np.ndarray:
  """(x, y) px [..., 2] between resolutions, pixel centres kept: x' = (x + 0.5) sx - 0.5.

  Input -> model px with input_scale(); model -> input px with (1/sx, 1/sy).
  """
  return (np.asarray(xy, np.float32) + 0.5) * np.array([sx, sy], np.float32) - 0.5


def rescale_tyx(queries: np.ndarray, sx: float, sy: float) -> np.ndarray:
  """(t, y, x) queries [Q, 3] between resolutions (t unchanged); see rescale_xy."""
  queries = np.asarray(queries, np.float32)
  return np.concatenate([queries[:, :1], rescale_xy(queries[:, :0:-1], sx, sy)[:, ::-1]], -1)


def make_pair_index(pairs: np.ndarray, num_frames: int) -> np.ndarray:
  """int32 [N, N]: row of each ordered pair in `pairs`, -1 elsewhere."""
  index = np.full((num_frames, num_frames), -1, np.int32)
  index[pairs[:, 0], pairs[:, 1]] = np.arange(len(pairs), dtype=np.int32)
  return index


def load_store(path: str | os.PathLike) -> SequenceData:
  """Loads a store written by `write_store` (masks unpacked to bool)."""
  path = Path(path)
  if not path.is_file():
    raise UserInputError(f'{path}: no preprocessed store here; run `omnimotion-jax preprocess` '
                         'first.')
  try:
    with np.load(path, allow_pickle=False) as npz:
      missing = [key for key in STORE_KEYS if key not in npz.files]
      if missing:
        raise UserInputError(f'{path}: not an omnimotion_jax store (missing {missing}); '
                             're-run preprocessing.')
      data = {key: npz[key] for key in STORE_KEYS}
  except UserInputError:
    raise
  except Exception as error:
    raise UserInputError(f'{path}: unreadable store ({type(error).__name__}: {error}); delete '
                         'it and re-run preprocessing.') from None
  meta = json.loads(str(data['meta']))
  if meta.get('format_version') != FORMAT_VERSION:
    raise UserInputError(f'{path}: store format {meta.get("format_version")}, this version reads '
                         f'{FORMAT_VERSION}; delete it and re-run preprocessing.')
  num_frames, height, width = data['frames'].shape[:3]
  return SequenceData(
      frames=data['frames'], frame_indices=data['frame_indices'], pairs=data['pairs'],
      flows=data['flows'], cycle=unpack_masks(data['cycle'], height, width),
      occluded=unpack_masks(data['occluded'], height, width), counts=data['counts'],
      pair_counts=data['pair_counts'], pair_index=make_pair_index(data['pairs'], num_frames),
      meta_json=str(data['meta']))


def to_device(seq: SequenceData, device=None) -> SequenceData:
  """The same SequenceData with every array on a jax device (jax.device_put; dtypes kept)."""
  arrays = {field.name: jax.device_put(getattr(seq, field.name), device)
            for field in dataclasses.fields(seq) if field.name != 'meta_json'}
  return SequenceData(meta_json=seq.meta_json, **arrays)
