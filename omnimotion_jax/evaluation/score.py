"""Scoring a trained workdir against ground truth, beside the flow-only baselines.

Three trackers are built from the SAME input correspondences (the workdir's store) and scored with
the TAP-Vid metrics exactly as TapNet computes them, plus OmniMotion's temporal coherence (TC):
  omnimotion   the optimised model (argmax-sample mapping, occlusion test);
  chained      adjacent flows integrated from the query frame, cycle-check occlusion;
  direct       flow from the query frame straight to each frame, cycle-check occlusion.
Tracks are compared at 256x256 (TAP-Vid's resolution): predictions and ground truth are rescaled
with `convert_grid_coordinates` before scoring, so the pixel thresholds mean what they mean in
TAP-Vid whatever the video's size.
"""

import time
from pathlib import Path

import ml_collections
import numpy as np

from omnimotion_jax import fileio
from omnimotion_jax import pipeline
from omnimotion_jax import tapvid
from omnimotion_jax import workdir as workdir_lib
from omnimotion_jax.data import flow as flow_lib
from omnimotion_jax.data import store
from omnimotion_jax.data import video as video_lib
from omnimotion_jax.errors import UserInputError
from omnimotion_jax.evaluation import baselines

TRACKERS = ('omnimotion', 'chained', 'direct')
METRIC_SIZE = (256, 256)  # (H, W) at which TAP-Vid metrics are computed.
HEADLINE = ('average_jaccard', 'average_pts_within_thresh', 'occlusion_accuracy',
            'temporal_coherence')


def score(query_points: np.ndarray, gt_tracks: np.ndarray, gt_occluded: np.ndarray,
          pred_tracks: np.ndarray, pred_occluded: np.ndarray, size: tuple[int, int],
          query_mode: str) -> dict[str, float]:
  """TAP-Vid metrics and TC of one video at 256x256.

  Args:
    query_points: [Q, 3] (t, y, x) px at `size`.
    gt_tracks, pred_tracks: [Q, T, 2] (x, y) px at `size`.
    gt_occluded, pred_occluded: [Q, T] bool.
    size: (H, W) of the video the px refer to.
    query_mode: 'first' or 'strided'.
  """
  scale = lambda tr: tapvid.convert_grid_coordinates(tr, size[::-1], METRIC_SIZE[::-1])
  q = tapvid.convert_grid_coordinates(query_points, (1,) + tuple(size), (1,) + METRIC_SIZE,
                                      coordinate_format='tyx')
  gt, pred = scale(gt_tracks)[None], scale(pred_tracks)[None]
  metrics = tapvid.compute_tapvid_metrics(q[None], gt_occluded[None], gt, pred_occluded[None],
                                          pred, query_mode)
  out = {k: float(v[0]) for k, v in metrics.items()}
  out['temporal_coherence'] = float(tapvid.temporal_coherence(gt, gt_occluded[None], pred)[0])
  return out


def save_ground_truth(workdir: Path, query_points: np.ndarray, target_points: np.ndarray,
                      occluded: np.ndarray) -> Path:
  """Writes workdir/gt.npz (query_points [Q,3] (t,y,x), target_points [Q,T,2], occluded [Q,T])."""
  return fileio.write_npz_atomic(Path(workdir) / workdir_lib.GT, {
      'query_points': query_points.astype(np.float32),
      'target_points': target_points.astype(np.float32), 'occluded': occluded.astype(bool)})


def input_frames(seq: store.SequenceData, video: np.ndarray | None = None) -> np.ndarray:
  """uint8 [N, H_in, W_in, 3]: the store's frames at the input video's own size.

  The store's frames when the model runs at the input size; otherwise the same frames (same
  stride and frame cap), not resized, of `video` (the uint8 [T, H_in, W_in, 3] frames the store
  was made from) or else decoded again from the store's source.
  """
  meta = seq.meta
  if tuple(meta.get('input_size', seq.size)) == tuple(seq.size):
    return np.asarray(seq.frames)
  stride, max_frames = meta.get('stride', 1), meta.get('max_frames')
  source = meta['source']
  if video is not None:
    frames, _ = video_lib.select_frames(video, stride=stride, max_frames=max_frames)
  else:
    source = Path(source)
    if meta.get('masks_from') == 'omnimotion_dir' or (source / flow_lib.COLOR_DIR).is_dir():
      source = source / flow_lib.COLOR_DIR  # A reference sequence folder: its frames.
    frames = video_lib.load_video(source, stride=stride, max_frames=max_frames)
  if len(frames) != seq.num_frames:
    raise UserInputError(f'{source}: {len(frames)} frames now, the store has '
                         f'{seq.num_frames}; re-run preprocessing.')
  return frames


def predict_workdir(config: ml_collections.ConfigDict, workdir: Path, query_points: np.ndarray,
                    trackers=TRACKERS, video: np.ndarray | None = None
                    ) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
  """Tracks queries with each tracker on one preprocessed (and, for 'omnimotion', trained) run.

  OmniMotion tracks at the model's resolution and returns input px. The flow baselines run at
  the INPUT video's resolution on its own frames (with the run's flow method): when the model
  runs on downscaled frames they are not handicapped by that. At the model's own size they use
  the store's adjacent flows (chained), exactly what the model is supervised with. OmniMotion's
  tracks are also written to workdir/tracks_eval.npz (the report's GT comparison).

  Args:
    query_points: [Q, 3] (t, y, x) in the input video's px.
    video: the input frames uint8 [T, H_in, W_in, 3] when the store was made from an array
      (see `input_frames`).

  Returns:
    {tracker: (tracks [Q, T, 2] (x, y) input px, occluded [Q, T] bool, seconds)}.
  """
  workdir = Path(workdir)
  seq = workdir_lib.load_sequence(workdir)
  full_size = tuple(seq.meta.get('input_size', seq.size)) == tuple(seq.size)
  frames = None
  out = {}
  for name in trackers:
    start = time.time()
    if name == 'omnimotion':
      data = workdir_lib.read_tracks(pipeline.track_stage(
          config, workdir, queries=query_points, out=workdir / workdir_lib.EVAL_TRACKS))
      tracks, occ = data['tracks'], data['occluded']
    elif name in ('chained', 'direct'):
      flow_fn = baselines.baseline_flow_fn(config.data)
      if frames is None:
        frames = input_frames(seq, video)
      if name == 'direct':
        tracks, occ = baselines.direct_flow_tracks(frames, query_points, flow_fn,
                                                   cycle_threshold=config.data.cycle_threshold)
      else:
        adjacent = seq if full_size else baselines.adjacent_store(
            frames, flow_fn, cycle_threshold=config.data.cycle_threshold)
        tracks, occ = baselines.chained_flow_tracks(adjacent, query_points,
                                                    cycle_threshold=config.data.cycle_threshold)
    else:
      raise ValueError(f'unknown tracker {name!r}')
    out[name] = (tracks, occ, time.time() - start)
  return out


def evaluate_workdir(config: ml_collections.ConfigDict, workdir: Path, *,
                     query_points: np.ndarray, target_points: np.ndarray, occluded: np.ndarray,
                     query_mode: str = 'strided', trackers=TRACKERS,
                     video: np.ndarray | None = None) -> dict:
  """Scores the trackers on one video; writes workdir/gt.npz, eval.json and tracks_eval.npz.

  Args:
    config: the run's config (for tracking and the baselines' flow method and cycle threshold).
    workdir: a preprocessed (and, for 'omnimotion', trained) run folder.
    query_points: [Q, 3] (t, y, x) in the INPUT video's px.
    target_points: [Q, T, 2] (x, y) ground truth in input px; occluded: [Q, T] bool.
    query_mode: TAP-Vid protocol, 'strided' or 'first'.
    trackers: which trackers to score (see `predict_workdir`).
    video: the input frames, when the store was made from an array (see `input_frames`).

  Returns:
    {tracker: {metric: value, ..., 'wall_s': seconds}}.
  """
  workdir = Path(workdir)
  meta = store.read_meta(workdir / workdir_lib.STORE)
  size = tuple(meta.get('input_size', meta['size']))
  results = {}
  for name, (tracks, occ, seconds) in predict_workdir(config, workdir, query_points, trackers,
                                                     video).items():
    start = time.time()
    results[name] = score(query_points, target_points, occluded, tracks, occ, size, query_mode)
    results[name]['wall_s'] = round(seconds + time.time() - start, 3)
  save_ground_truth(workdir, query_points, target_points, occluded)
  workdir_lib.write_json(workdir / workdir_lib.EVAL,
                         {'query_mode': query_mode, 'metric_size': list(METRIC_SIZE), **results})
  return results


def format_table(results: dict) -> str:
  """A small markdown table of the headline metrics (x100 as in TAP-Vid papers; TC in px)."""
  lines = ['| tracker | AJ | <delta^x_avg | OA | TC (px) |', '|---|---|---|---|---|']
  for name, m in results.items():
    if not isinstance(m, dict):
      continue
    lines.append(f'| {name} | {100 * m["average_jaccard"]:.1f} | '
                 f'{100 * m["average_pts_within_thresh"]:.1f} | '
                 f'{100 * m["occlusion_accuracy"]:.1f} | {m["temporal_coherence"]:.3f} |')
  return '\n'.join(lines)
