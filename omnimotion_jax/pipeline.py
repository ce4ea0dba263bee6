"""Workdir-level stages: preprocess -> train -> track -> pseudo-depth -> report.

Each stage reads its inputs from a run folder and writes its outputs there (workdir.py names the
files). The CLI sub-commands are thin wrappers over these functions.
"""

import logging
import os
import shutil
import time
from pathlib import Path

import jax
import ml_collections
import numpy as np

from omnimotion_jax import checkpoint
from omnimotion_jax import fileio
from omnimotion_jax import track
from omnimotion_jax import workdir as workdir_lib
from omnimotion_jax.data import preprocess as preprocess_lib
from omnimotion_jax.data import store
from omnimotion_jax.errors import UserInputError
from omnimotion_jax.model import model as model_lib
from omnimotion_jax.model import render
from omnimotion_jax.train import loop as train_loop
from omnimotion_jax.train import sampler

_log = logging.getLogger(__name__)
# Frames (as fractions of the video) whose pseudo-depth is saved at every checkpoint.
SNAPSHOT_FRAME_FRACTIONS = (0.0, 0.5, 1.0)
# Snapshots render every 2nd px: a quarter of the cost (the report's strips are thumbnails).
SNAPSHOT_STRIDE = 2


def video_shape(seq: store.SequenceData) -> render.VideoShape:
  return render.VideoShape(seq.num_frames, *seq.size)


def preprocess_stage(video: str | os.PathLike | np.ndarray, workdir: Path,
                     config: ml_collections.ConfigDict, *, flow_dir=None, features_dir=None,
                     keep_cache: bool = False) -> Path:
  """Preprocesses a video into workdir/sequence.npz and preprocess.json (data/preprocess.py).

  video: a video file or folder of frames, a reference sequence folder (data.flow_backend
  'omnimotion_dir'), or uint8 frames [T, H, W, 3]. flow_dir / features_dir override data.flow_dir
  / data.features_dir (see preprocess.load_input); without features, data.dino_weights computes
  DINO features (preprocess.computed_features). keep_cache keeps workdir/flow_cache. A store
  made from the same input and data config is kept as it is; an interrupted run resumes from the
  flow cache. Returns the store path.
  """
  start = time.time()
  workdir, c = Path(workdir), config.data
  inp = preprocess_lib.load_input(video, c, workdir, flow_dir=flow_dir, features_dir=features_dir)
  store_path, report_path = workdir / workdir_lib.STORE, workdir / workdir_lib.PREPROCESS
  meta = store.read_meta(store_path) if store_path.is_file() else None
  if meta is not None and meta.get('preprocess_key') == inp.key and report_path.is_file():
    _log.info('%s: already preprocessed from %s with this config; nothing to do (delete it to '
              'redo).', store_path, inp.source)
    return store_path
  t0 = time.perf_counter()
  frames, frame_indices, probe, features = preprocess_lib.read_frames(video, inp, c)
  load_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  if features is None:
    features = preprocess_lib.computed_features(frames, inp, c)
  features_s = time.perf_counter() - t0
  input_size = (probe['height'], probe['width'])
  arrays, facts = preprocess_lib.preprocess_frames(
      frames, frame_indices, c, input_size=input_size, flow_dir=inp.flow_dir,
      seq_dir=inp.seq_dir, features=features, cache_dir=workdir / workdir_lib.FLOW_CACHE)
  meta, report = preprocess_lib.describe(
      arrays, facts, c, key=inp.key, source=inp.source, input_size=input_size,
      input_frames=probe['num_frames'], fps=probe['fps'], features_dir=inp.features_source)
  t0 = time.perf_counter()
  store.write_store(store_path, meta=meta, **arrays)
  timings = {'load': load_s, 'features': features_s, **facts['timings_s'],
             'write': time.perf_counter() - t0, 'total': time.time() - start}
  report.update(store=str(store_path), timings_s={k: round(v, 3) for k, v in timings.items()})
  report['bytes']['store'] = store_path.stat().st_size
  workdir_lib.write_json(report_path, report)
  if not keep_cache:
    shutil.rmtree(workdir / workdir_lib.FLOW_CACHE, ignore_errors=True)
  _log.info('%s: %d frames %dx%d, %d pairs, %.1f MB in %.1f s.', store_path, len(frames),
            frames.shape[2], frames.shape[1], len(arrays['pairs']), report['bytes']['store'] / 1e6,
            timings['total'])
  workdir_lib.record_timing(workdir, 'preprocess', time.time() - start)
  return store_path


def set_aside_stale_checkpoints(workdir: Path, store_key: str,
                                config: ml_collections.ConfigDict | None = None) -> Path | None:
  """Moves checkpoints of another store or another training config aside (never deletes them).

  A run resumes from workdir/checkpoints automatically. After the video or the preprocessing
  config changed (a new store), or the model or training config changed (`loop.training_key`),
  resuming would continue a model fitted to other data or with other settings, and a finished
  run would silently be reused. Returns the folder the old checkpoints were moved to, or None if
  they were current (or absent). store_key is the store's meta['preprocess_key'].
  """
  train_key = '' if config is None else train_loop.training_key(config)
  marker = workdir / workdir_lib.TRAINED_ON
  ckpt = workdir / workdir_lib.CHECKPOINTS
  old = marker.read_text().split() if marker.exists() else []
  old_store = old[0] if old else 'unknown'
  old_train = old[1] if len(old) > 1 else ''
  saved = workdir_lib.load_saved_config(workdir)
  if (old_store == store_key and old_train != train_key and config is not None
      and saved is not None and not train_loop.changed_training_fields(saved, config)):
    old_train = train_key  # Saved by an earlier version (another layout): the same run.
  moved = None
  if ckpt.is_dir() and any(ckpt.iterdir()) and (old_store, old_train) != (store_key, train_key):
    why = ('the video or preprocessing changed' if old_store != store_key
           else 'the model or training config changed')
    stem = f'{workdir_lib.CHECKPOINTS}.stale-{old_store[:12]}-{int(time.time())}'
    moved, n = workdir / stem, 1
    while moved.exists():  # Two set-asides within a second.
      moved, n = workdir / f'{stem}-{n}', n + 1
    ckpt.rename(moved)
    _log.warning('%s: trained on another store or config (%s); moved to %s and training from '
                 'scratch.', ckpt, why, moved)
  fileio.write_text_atomic(marker, f'{store_key} {train_key}')
  return moved


def _prepare_training(config: ml_collections.ConfigDict, workdir: Path):
  """(TrainData, pseudo-depth snapshot callback(step, state)) of a preprocessed run folder.

  Checkpoints left by a run on a different store, or with a different model or training config,
  are set aside first (see `set_aside_stale_checkpoints`).
  """
  seq = workdir_lib.load_sequence(workdir)
  set_aside_stale_checkpoints(workdir, seq.meta.get('preprocess_key', ''), config)
  video = video_shape(seq)
  model = model_lib.build(model_lib.model_config(config.model))
  depth_fn = track.make_depth_fn(model, video)
  frames = sorted({int(round(f * (video.num_frames - 1))) for f in SNAPSHOT_FRAME_FRACTIONS})
  (workdir / workdir_lib.SNAPSHOTS).mkdir(parents=True, exist_ok=True)

  def snapshot(step, state):
    depth = track.depth_maps(depth_fn, state.params, video, frames,
                             chunk_size=config.track.chunk_size, stride=SNAPSHOT_STRIDE)
    name = workdir_lib.SNAPSHOT.format(step=step)
    fileio.write_npy_atomic(workdir / workdir_lib.SNAPSHOTS / name, depth)

  return sampler.train_data(seq), snapshot


def train_stage(config: ml_collections.ConfigDict, workdir: Path, stop_at: int | None = None,
                devices=None) -> train_loop.step_lib.TrainState:
  """Trains on workdir's store (resuming), saving pseudo-depth snapshots at checkpoints.

  devices: several devices split each step's rays between them (train/parallel.py).
  """
  workdir = Path(workdir)
  data, snapshot = _prepare_training(config, workdir)
  start = time.time()
  state = train_loop.fit(config, workdir, data, stop_at=stop_at, on_checkpoint=snapshot,
                         devices=devices)
  workdir_lib.record_timing(workdir, 'train', time.time() - start)
  return state


def train_many_stage(config: ml_collections.ConfigDict, workdirs, *, devices=None,
                     stop_at: int | None = None) -> list[train_loop.step_lib.TrainState]:
  """`train_stage` for several run folders as one batch (loop.fit_many) on `devices` (default:
  all local devices). Each folder records the batch's wall time as its training time."""
  workdirs = [Path(w) for w in workdirs]
  prepared = [_prepare_training(config, w) for w in workdirs]
  start = time.time()
  states = train_loop.fit_many(
      config, workdirs, [data for data, _ in prepared], devices=devices, stop_at=stop_at,
      on_checkpoint=lambda index, step, state: prepared[index][1](step, state))
  for workdir in workdirs:
    workdir_lib.record_timing(workdir, 'train', time.time() - start)
  return states


def load_trained(config: ml_collections.ConfigDict, workdir: Path):
  """(model, params, seq) from workdir's store and the parameters of its newest checkpoint."""
  workdir = Path(workdir)
  seq = workdir_lib.load_sequence(workdir)
  model = model_lib.build(model_lib.model_config(config.model))
  abstract = jax.eval_shape(lambda k: model_lib.init_params(model, k), jax.random.PRNGKey(0))
  restored = checkpoint.restore_params(workdir / workdir_lib.CHECKPOINTS, abstract)
  if restored is None:
    raise UserInputError(f'{workdir / workdir_lib.CHECKPOINTS}: no checkpoint; run '
                         f'`omnimotion-jax train --workdir {workdir}` first.')
  return model, restored[0], seq


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
                out: str | os.PathLike | None = None) -> Path:
  """Tracks queries (t, y, x) given in INPUT-video px (or a grid) and writes an .npz."""
  workdir = Path(workdir)
  start = time.time()
  model, params, seq = load_trained(config, workdir)
  video = video_shape(seq)
  sx, sy = workdir_lib.input_scale(seq)
  in_h, in_w = seq.meta.get('input_size', seq.size)
  if queries is None:
    if grid is None or grid < 1:
      raise UserInputError('track: pass --queries Q.npy or --grid STEP (px, >= 1).')
    if not 0 <= frame < video.num_frames:
      raise UserInputError(f'--frame {frame}: the video has frames 0..{video.num_frames - 1}.')
    queries = track.grid_queries(render.VideoShape(video.num_frames, in_h, in_w), grid, frame)
  t = np.round(queries[:, 0])
  if ((t < 0) | (t > video.num_frames - 1)).any():
    raise UserInputError(f'query frames must lie in 0..{video.num_frames - 1} (of the '
                         'preprocessed video).')
  model_q = store.rescale_tyx(queries, sx, sy)
  model_q[:, 0] = t
  tc = config.track
  margin = render.occlusion_margin(model, tc.occlusion_eps_factor)
  model_cfg = model.config
  mapper = render.compiled_mapper(model_cfg, video, margin, tc.use_max_loc)
  back_mapper = render.compiled_mapper(model_cfg, video, margin, tc.use_max_loc,
                                       with_occlusion=False) if tc.cycle_threshold > 0 else None
  tracks, occluded = track.track_queries(
      mapper, params, model_q, video, chunk_size=tc.chunk_size,
      occlusion_threshold=tc.occlusion_threshold, cycle_threshold=tc.cycle_threshold,
      cycle_threshold_per_frame=tc.cycle_threshold_per_frame, back_mapper=back_mapper)
  out = Path(out) if out is not None else workdir / workdir_lib.TRACKS
  workdir_lib.write_tracks(out, seq, tracks, occluded, queries)
  workdir_lib.record_timing(workdir, 'track', time.time() - start)
  return out


def depth_stage(config: ml_collections.ConfigDict, workdir: Path) -> Path:
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
                           stride=stride)
  depth = track.upsample_strided(depth, stride, video.height, video.width)
  path = workdir / workdir_lib.DEPTH
  fileio.write_npy_atomic(path, depth.astype(np.float32))
  workdir_lib.record_timing(workdir, 'depth', time.time() - start)
  return path


def report_stage(workdir: Path) -> Path:
  from omnimotion_jax.viz import report  # pylint: disable=g-import-not-at-top  (matplotlib)
  start = time.time()
  index = report.viz_command(workdir)
  workdir_lib.record_timing(workdir, 'viz', time.time() - start)
  return index


def run(video: str | os.PathLike | np.ndarray, workdir: Path, config: ml_collections.ConfigDict,
        *, grid: int = 8, frame: int = 0, with_report: bool = True) -> dict[str, Path]:
  """preprocess + train + track a grid + pseudo-depth + the HTML report."""
  return run_many([video], [workdir], config, grid=grid, frame=frame,
                  with_report=with_report)[0]


def run_many(videos, workdirs, config: ml_collections.ConfigDict, *, grid: int = 8,
             frame: int = 0, with_report: bool = True) -> list[dict[str, Path]]:
  """`run` for several videos, one run folder each; they train as one batch (train_many_stage)."""
  workdirs = [Path(w) for w in workdirs]
  runs = [{'store': preprocess_stage(v, w, config)} for v, w in zip(videos, workdirs)]
  if len(workdirs) == 1:
    train_stage(config, workdirs[0])
  else:
    train_many_stage(config, workdirs)
  for workdir, outputs in zip(workdirs, runs):
    outputs['tracks'] = track_stage(config, workdir, grid=grid, frame=frame)
    outputs['depth'] = depth_stage(config, workdir)
    if with_report:
      outputs['report'] = report_stage(workdir)
  return runs
