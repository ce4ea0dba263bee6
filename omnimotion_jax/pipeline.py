"""Workdir-level stages: preprocess -> train -> track -> pseudo-depth -> report.

A run folder ("workdir") holds everything of one video:
  sequence.npz, preprocess.json     the preprocessed store (preprocess.py)
  config.json, checkpoints/         resolved config and orbax checkpoints (train.py)
  metrics.jsonl, train.json         per-step metrics and the training summary
  snapshots/depth_XXXXXX.npy        pseudo-depth of a few frames at each checkpoint
  tracks.npz                        tracks [Q,T,2] (x,y), occluded [Q,T], query_points [Q,3] (t,y,x)
                                    in the INPUT video's pixels
  depth.npy                         pseudo-depth [N,H,W] at the model's resolution
  timings.json                      wall time per stage (s)
The CLI sub-commands are thin wrappers over these functions.
"""

import json
import os
import time
from pathlib import Path

import jax
import ml_collections
import numpy as np

from omnimotion_jax import checkpoint
from omnimotion_jax import fileio
from omnimotion_jax.model import render
from omnimotion_jax.train import sampler
from omnimotion_jax.data import store
from omnimotion_jax import track
from omnimotion_jax.train import loop as train
from omnimotion_jax.model import model as model_lib
from omnimotion_jax.data import preprocess as preprocess_lib
from omnimotion_jax.errors import UserInputError

TIMINGS_FILE = 'timings.json'
TRACKS_FILE = 'tracks.npz'
DEPTH_FILE = 'depth.npy'
SNAPSHOT_DIR = 'snapshots'
# Frames (as fractions of the video) whose pseudo-depth is saved at every checkpoint.
SNAPSHOT_FRAME_FRACTIONS = (0.0, 0.5, 1.0)
# Snapshots render every 2nd px: a quarter of the cost. At full resolution they took ~3 s per
# checkpoint on a 192x192 video (~6 % of cpu_quality's training time on synthetic-v1); the
# report's strips are thumbnails anyway.
SNAPSHOT_STRIDE = 2


def record_timing(workdir: Path, stage: str, seconds: float) -> None:
  path = Path(workdir) / TIMINGS_FILE
  timings = json.loads(path.read_text()) if path.exists() else {}
  timings[stage] = round(seconds, 3)
  fileio.write_text_atomic(path, json.dumps(timings, indent=2))


def load_sequence(workdir: Path) -> store.SequenceData:
  return store.load_store(Path(workdir) / preprocess_lib.STORE_NAME)


def video_shape(seq: store.SequenceData) -> render.VideoShape:
  return render.VideoShape(seq.num_frames, *seq.size)


def input_scale(seq: store.SequenceData) -> tuple[float, float]:
  """(sx, sy): model px per input px (pixel centres: x_model = (x_in + 0.5) sx - 0.5)."""
  return store.input_scale(seq.meta, seq.size)


def preprocess_stage(video: str, workdir: Path, config: ml_collections.ConfigDict,
                     progress: bool = True) -> Path:
  start = time.time()
  path = preprocess_lib.preprocess(video, workdir, config.data, progress=progress)
  record_timing(workdir, 'preprocess', time.time() - start)
  return path


TRAINED_ON_FILE = 'trained_on.txt'  # Store key and training key the checkpoints belong to.

def set_aside_stale_checkpoints(workdir: Path, store_key: str,
                                train_key: str = '') -> Path | None:
  """Moves checkpoints of another store or another training config aside (never deletes them).

  A run resumes from workdir/checkpoints automatically. After the video or the preprocessing
  config changed (a new store), or the model or training config changed (`train.training_key`),
  resuming would continue a model fitted to other data or with other settings, and a finished
  run would silently be reused. Returns the folder the old checkpoints were moved to, or None if
  they were current (or absent). store_key is the store's meta['preprocess_key'].
  """
  marker = workdir / TRAINED_ON_FILE
  ckpt = workdir / train.CHECKPOINT_DIR
  old = marker.read_text().split() if marker.exists() else []
  old_store = old[0] if old else 'unknown'
  old_train = old[1] if len(old) > 1 else ''
  moved = None
  if ckpt.is_dir() and any(ckpt.iterdir()) and (old_store, old_train) != (store_key, train_key):
    why = ('the video or preprocessing changed' if old_store != store_key
           else 'the model or training config changed')
    stem = f'{train.CHECKPOINT_DIR}.stale-{old_store[:12]}-{int(time.time())}'
    moved, n = workdir / stem, 1
    while moved.exists():  # Two set-asides within a second.
      moved, n = workdir / f'{stem}-{n}', n + 1
    ckpt.rename(moved)
    print(f'{ckpt}: trained on another store or config ({why}); moved to {moved} and training '
          'from scratch.')
  fileio.write_text_atomic(marker, f'{store_key} {train_key}')
  return moved


def train_stage(config: ml_collections.ConfigDict, workdir: Path, progress: bool = True,
                stop_at: int | None = None) -> train.TrainState:
  """Trains on workdir's store (resuming), saving pseudo-depth snapshots at checkpoints.

  Checkpoints left by a run on a different store, or with a different model or training config,
  are set aside first (see `set_aside_stale_checkpoints`).
  """
  workdir = Path(workdir)
  seq = load_sequence(workdir)
  set_aside_stale_checkpoints(workdir, seq.meta.get('preprocess_key', ''),
                              train.training_key(config))
  video = video_shape(seq)
  model = model_lib.OmniMotion(model_lib.model_config(config.model, video.num_frames))
  depth_fn = track.make_depth_fn(model, video)
  frames = sorted({int(round(f * (video.num_frames - 1))) for f in SNAPSHOT_FRAME_FRACTIONS})
  (workdir / SNAPSHOT_DIR).mkdir(parents=True, exist_ok=True)

  def snapshot(step, state):
    depth = track.depth_maps(depth_fn, state.params, video, frames,
                             chunk_size=config.track.chunk_size, stride=SNAPSHOT_STRIDE)
    fileio.write_npy_atomic(workdir / SNAPSHOT_DIR / f'depth_{step:06d}.npy', depth)

  start = time.time()
  state = train.fit(config, workdir, sampler.train_data(seq), progress=progress, stop_at=stop_at,
                    on_checkpoint=snapshot)
  record_timing(workdir, 'train', time.time() - start)
  return state


def load_trained(config: ml_collections.ConfigDict, workdir: Path):
  """(model, params, seq) from workdir's store and newest checkpoint."""
  workdir = Path(workdir)
  seq = load_sequence(workdir)
  video = video_shape(seq)
  model = model_lib.OmniMotion(model_lib.model_config(config.model, video.num_frames))
  tx = train.make_optimizer(config.train)
  template = jax.eval_shape(lambda k: train.create_train_state(model, tx, k, video),
                            jax.random.PRNGKey(0))
  mngr = checkpoint.manager(workdir / train.CHECKPOINT_DIR, config.train.checkpoint_keep)
  state = checkpoint.restore_latest(mngr, template)
  mngr.close()
  if state is None:
    raise UserInputError(f'{workdir / train.CHECKPOINT_DIR}: no checkpoint; run '
                         f'`omnimotion-jax train --workdir {workdir}` first.')
  return model, state.params, seq


def load_queries(path: str | os.PathLike) -> np.ndarray:
  path = Path(path)
  if not path.is_file():
    raise UserInputError(f'{path}: query file not found; pass a .npy of [N, 3] (t, y, x) px.')
  try:
    queries = np.load(path, allow_pickle=False)
  except Exception as e:  # pylint: disable=broad-except
    raise UserInputError(f'{path}: not a readable .npy file ({e}).') from None
  if queries.ndim != 2 or queries.shape[1] != 3:
    raise UserInputError(f'{path}: expected a float array of shape [N, 3] (t, y, x), '
                         f'got shape {queries.shape}.')
  if not np.issubdtype(queries.dtype, np.number):
    raise UserInputError(f'{path}: expected numbers (t, y, x in px), got dtype {queries.dtype}.')
  bad = ~np.isfinite(queries).all(axis=1)
  if bad.any():
    raise UserInputError(f'{path}: {int(bad.sum())} of {len(queries)} query rows hold NaN or inf '
                         f'(first: row {int(np.argmax(bad))}); every (t, y, x) must be finite.')
  return queries.astype(np.float32)


def track_stage(config: ml_collections.ConfigDict, workdir: Path, *,
                queries: np.ndarray | None = None, grid: int | None = None, frame: int = 0,
                out: str | os.PathLike | None = None, progress: bool = True) -> Path:
  """Tracks queries (t, y, x) given in INPUT-video px (or a grid) and writes an .npz."""
  workdir = Path(workdir)
  start = time.time()
  model, params, seq = load_trained(config, workdir)
  video = video_shape(seq)
  sx, sy = input_scale(seq)
  in_h, in_w = seq.meta.get('input_size', seq.size)
  if queries is None:
    if grid is None or grid < 1:
      raise UserInputError('track: pass --queries Q.npy or --grid STEP (px, >= 1).')
    if not 0 <= frame < video.num_frames:
      raise UserInputError(f'--frame {frame}: the video has frames 0..{video.num_frames - 1}.')
    grid_in = track.grid_queries(render.VideoShape(video.num_frames, in_h, in_w), grid, frame)
    queries = grid_in
  t = np.round(queries[:, 0])
  if ((t < 0) | (t > video.num_frames - 1)).any():
    raise UserInputError(f'query frames must lie in 0..{video.num_frames - 1} (of the '
                         'preprocessed video).')
  model_q = store.rescale_tyx(queries, sx, sy)
  model_q[:, 0] = t
  margin = render.occlusion_margin(model, config.track.occlusion_eps_factor)
  mapper = track.make_mapper(model, video, margin, use_max_loc=config.track.use_max_loc)
  cycle_threshold = config.track.cycle_threshold
  back_mapper = track.make_mapper(model, video, margin, use_max_loc=config.track.use_max_loc,
                                  with_occlusion=False) if cycle_threshold > 0 else None
  tracks, occluded = track.track_queries(mapper, params, model_q, video,
                                         chunk_size=config.track.chunk_size,
                                         occlusion_threshold=config.track.occlusion_threshold,
                                         cycle_threshold=cycle_threshold,
                                         cycle_threshold_per_frame=(
                                             config.track.cycle_threshold_per_frame),
                                         back_mapper=back_mapper, progress=progress)
  tracks_in = store.rescale_xy(tracks, 1 / sx, 1 / sy)
  out = Path(out) if out is not None else workdir / TRACKS_FILE
  fileio.write_npz_atomic(out, {'tracks': tracks_in.astype(np.float32), 'occluded': occluded,
                                'query_points': queries.astype(np.float32)})
  record_timing(workdir, 'track', time.time() - start)
  return out


def depth_stage(config: ml_collections.ConfigDict, workdir: Path, progress: bool = True) -> Path:
  """Pseudo-depth of every frame at the model's resolution -> workdir/depth.npy [N, H, W].

  With track.depth_stride s > 1 the model is evaluated at every s-th px and the maps are
  upsampled bilinearly (s^2 times cheaper; at 854x480 full-resolution depth costs most of a run).
  """
  workdir = Path(workdir)
  start = time.time()
  model, params, seq = load_trained(config, workdir)
  video = video_shape(seq)
  stride = config.track.depth_stride
  depth = track.depth_maps(track.make_depth_fn(model, video), params, video,
                           np.arange(video.num_frames), chunk_size=config.track.chunk_size,
                           stride=stride, progress=progress)
  depth = track.upsample_strided(depth, stride, video.height, video.width)
  path = workdir / DEPTH_FILE
  fileio.write_npy_atomic(path, depth.astype(np.float32))
  record_timing(workdir, 'depth', time.time() - start)
  return path


def report_stage(workdir: Path) -> Path:
  from omnimotion_jax.viz import report  # pylint: disable=g-import-not-at-top  (matplotlib)
  start = time.time()
  index = report.viz_command(workdir)
  record_timing(workdir, 'viz', time.time() - start)
  return index


def run(video: str, workdir: Path, config: ml_collections.ConfigDict, *, grid: int = 8,
        frame: int = 0, progress: bool = True, with_report: bool = True) -> dict[str, Path]:
  """preprocess + train + track a grid + pseudo-depth + the HTML report."""
  workdir = Path(workdir)
  outputs = {'store': preprocess_stage(video, workdir, config, progress)}
  train_stage(config, workdir, progress)
  outputs['tracks'] = track_stage(config, workdir, grid=grid, frame=frame, progress=progress)
  outputs['depth'] = depth_stage(config, workdir, progress)
  if with_report:
    outputs['report'] = report_stage(workdir)
  return outputs
