"""The run folder ("workdir") of one video: the one module that knows its file names.

  sequence.npz, preprocess.json   the preprocessed store and its facts (data/preprocess.py)
  flow_cache/                      per-pair flows while preprocessing runs (removed after)
  config.json                      the resolved config of the last training run
  checkpoints/, trained_on.txt     orbax checkpoints; the store and training keys they belong to
  metrics.jsonl, train.json        per-step metrics; the training summary
  snapshots/depth_XXXXXX.npy       pseudo-depth of a few frames at each checkpoint
  tracks.npz                       tracks [Q,T,2] (x,y), occluded [Q,T], query_points [Q,3] (t,y,x),
                                   in the INPUT video's pixels
  depth.npy                        pseudo-depth [N,H,W] at the model's resolution
  timings.json                     wall time per stage (s)
  gt.npz, eval.json, tracks_eval.npz   ground truth, scores and scored tracks (evaluation runs)
  input.mp4                        the input video (demo)
  report/                          the HTML report (viz/report.py)

Pixels: the model works at the store's (possibly resized) resolution; files hold input-video px.
`input_scale` gives the factors, with pixel centres mapped onto pixel centres.
"""

import json
import os
from pathlib import Path

import ml_collections
import numpy as np

from omnimotion_jax import fileio
from omnimotion_jax.data import store as store_lib
from omnimotion_jax.errors import UserInputError

STORE = 'sequence.npz'
PREPROCESS = 'preprocess.json'
FLOW_CACHE = 'flow_cache'
CONFIG = 'config.json'
CHECKPOINTS = 'checkpoints'
TRAINED_ON = 'trained_on.txt'
METRICS = 'metrics.jsonl'
TRAIN_SUMMARY = 'train.json'
SNAPSHOTS = 'snapshots'
SNAPSHOT = 'depth_{step:06d}.npy'
TRACKS = 'tracks.npz'
DEPTH = 'depth.npy'
TIMINGS = 'timings.json'
GT = 'gt.npz'
EVAL = 'eval.json'
EVAL_TRACKS = 'tracks_eval.npz'
INPUT_VIDEO = 'input.mp4'
REPORT = 'report'


def read_json(path: str | os.PathLike) -> dict | list | None:
  """A JSON file's content, or None when it is missing or half-written."""
  try:
    return json.loads(Path(path).read_text())
  except (OSError, ValueError):
    return None


def write_json(path: Path, data: dict) -> Path:
  return fileio.write_text_atomic(path, json.dumps(data, indent=2, default=str))


def record_timing(workdir: Path, stage: str, seconds: float) -> None:
  timings = read_json(Path(workdir) / TIMINGS) or {}
  timings[stage] = round(seconds, 3)
  write_json(Path(workdir) / TIMINGS, timings)


def save_config(workdir: Path, config: ml_collections.ConfigDict) -> None:
  fileio.write_text_atomic(Path(workdir) / CONFIG, json.dumps(config.to_dict(), indent=2,
                                                              sort_keys=True, default=str))


def load_saved_config(workdir: Path) -> dict | None:
  """config.json as a dict (as saved: not migrated, not merged over the defaults), or None."""
  path = Path(workdir) / CONFIG
  return json.loads(path.read_text()) if path.exists() else None


def load_sequence(workdir: Path) -> store_lib.SequenceData:
  return store_lib.load_store(Path(workdir) / STORE)


def load_frames(workdir: Path) -> tuple[np.ndarray, np.ndarray] | None:
  """(frames uint8 [N, H, W, 3], frame_indices int [N]) of the store, or None if there is none.

  Reads only these two members of the .npz (not the flows).
  """
  path = Path(workdir) / STORE
  if not path.exists():
    return None
  with np.load(path, allow_pickle=False) as data:
    frames = np.asarray(data['frames'], np.uint8)
    indices = (np.asarray(data['frame_indices']) if 'frame_indices' in data.files
               else np.arange(len(frames)))
  return frames, indices


def stored_input_scale(workdir: Path, size: tuple[int, int]) -> tuple[float, float]:
  """`input_scale` from the store's meta alone (without loading its arrays); size = (H, W)."""
  return store_lib.input_scale(store_lib.read_meta(Path(workdir) / STORE) or {}, size)


def input_scale(seq: store_lib.SequenceData) -> tuple[float, float]:
  """(sx, sy): model px per input px (pixel centres: x_model = (x_in + 0.5) sx - 0.5)."""
  return store_lib.input_scale(seq.meta, seq.size)


def write_tracks(path: Path, seq: store_lib.SequenceData, tracks: np.ndarray,
                 occluded: np.ndarray, query_points: np.ndarray) -> Path:
  """Writes model-px tracks [Q,T,2] (x,y) as input-video px, beside the input-px queries [Q,3]."""
  sx, sy = input_scale(seq)
  return fileio.write_npz_atomic(path, {
      'tracks': store_lib.rescale_xy(tracks, 1 / sx, 1 / sy).astype(np.float32),
      'occluded': np.asarray(occluded, bool), 'query_points': query_points.astype(np.float32)})


def read_tracks(path: Path, seq: store_lib.SequenceData | None = None) -> dict[str, np.ndarray]:
  """A tracks file as a dict of arrays, in input-video px, or in model px when `seq` is given."""
  try:
    with np.load(path, allow_pickle=False) as f:
      data = {k: f[k] for k in f.files}
  except (OSError, ValueError) as e:
    raise UserInputError(f'{path}: not a readable tracks .npz ({e}).') from None
  missing = {'tracks', 'occluded'} - set(data)
  if missing:
    raise UserInputError(f'{path}: missing {", ".join(sorted(missing))}; write it with '
                         '`omnimotion-jax track`.')
  if seq is not None:
    sx, sy = input_scale(seq)
    data['tracks'] = store_lib.rescale_xy(data['tracks'], sx, sy)
    if 'query_points' in data:
      data['query_points'] = store_lib.rescale_tyx(data['query_points'], sx, sy)
  return data
