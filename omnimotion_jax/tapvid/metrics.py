"""TAP-Vid metrics, computed as TapNet's `compute_tapvid_metrics`, and OmniMotion's TC (Sec. 7).

Numpy only. Coordinate conventions, as in TapNet's readers:
  * query points are (t, y, x): frame index, then raster row and column;
  * tracks are (x, y) raster pixels. The paper numbers assume a 256x256 raster, so thresholds are
    in 256x256 pixels; use `convert_grid_coordinates` to move predictions made at another
    resolution onto that raster first.
"""

from typing import Mapping, Sequence

import numpy as np

# TAP-Vid protocol constants.
# Pixel thresholds delta (at 256x256) of pts_within_delta and jaccard_delta.
TAPVID_THRESHOLDS = (1, 2, 4, 8, 16)
QUERY_MODES = ('first', 'strided')

_COORDINATE_FORMAT_SIZES = {'xy': 2, 'tyx': 3}


def convert_grid_coordinates(
    coords: np.ndarray,
    input_grid_size: Sequence[int],
    output_grid_size: Sequence[int],
    coordinate_format: str = 'xy',
) -> np.ndarray:
  """Rescales raster coordinates from one grid size to another (TapNet's helper).

  This is a plain per-axis scaling, coords * output / input, with no half-pixel offset (TapNet's
  docstring mentions one, its code does not add it).

  Args:
    coords: [..., 2] points (x, y) for 'xy', or [..., 3] points (t, y, x) for 'tyx'.
    input_grid_size: size of the grid `coords` live in, in the same order as the coordinates:
      (width, height) for 'xy', (num_frames, height, width) for 'tyx'.
    output_grid_size: size of the target grid, same order as `input_grid_size`.
    coordinate_format: 'xy' or 'tyx'.

  Returns:
    [..., 2] or [..., 3] float array of the rescaled coordinates.

  Raises:
    ValueError: for an unknown `coordinate_format`, grid sizes whose length does not match it, or
      (for 'tyx') a change of frame count, which is not a resampling TapNet supports.
  """
  if coordinate_format not in _COORDINATE_FORMAT_SIZES:
    raise ValueError(
        f"Recognized coordinate formats are 'xy' and 'tyx', got {coordinate_format!r}.")
  input_grid_size = np.asarray(input_grid_size)
  output_grid_size = np.asarray(output_grid_size)
  expected = _COORDINATE_FORMAT_SIZES[coordinate_format]
  if input_grid_size.shape != (expected,) or output_grid_size.shape != (expected,):
    raise ValueError(
        f'For coordinate_format {coordinate_format!r} both grid sizes must have length '
        f'{expected}, got {input_grid_size.shape} and {output_grid_size.shape}.')
  if coordinate_format == 'tyx' and input_grid_size[0] != output_grid_size[0]:
    raise ValueError('Converting the frame count is not supported.')
  return np.asarray(coords) * output_grid_size / input_grid_size


def _evaluation_mask(query_points: np.ndarray, num_frames: int, query_mode: str) -> np.ndarray:
  """[B, N, T] bool: which (query, frame) entries the protocol scores."""
  if query_mode not in QUERY_MODES:
    raise ValueError(f'Unknown query mode {query_mode!r}; expected one of {QUERY_MODES}.')
  # np.round is round-half-to-even, exactly what TapNet uses.
  query_frame = np.round(query_points[..., 0]).astype(np.int32)[..., np.newaxis]
  if np.any(query_frame < 0) or np.any(query_frame >= num_frames):
    raise ValueError(f'Query frames must round into [0, {num_frames}).')
  frames = np.arange(num_frames)
  if query_mode == 'first':
    # Points are assumed occluded before their first visible frame, so only later frames count.
    return frames > query_frame
  return frames != query_frame


def compute_tapvid_metrics(
    query_points: np.ndarray,
    gt_occluded: np.ndarray,
    gt_tracks: np.ndarray,
    pred_occluded: np.ndarray,
    pred_tracks: np.ndarray,
    query_mode: str,
    get_trackwise_metrics: bool = False,
) -> Mapping[str, np.ndarray]:
  """TAP-Vid metrics (Jaccard, points within threshold, occlusion accuracy), per video.

  Same signature, argument order and arithmetic as TapNet's `compute_tapvid_metrics`. Every input
  is in raster pixels; the paper numbers assume a 256x256 raster. The benchmark score is the plain
  mean of these per-video values over all videos (papers multiply by 100).

  Evaluated entries: in 'first' mode, frames strictly after the (rounded) query frame; in
  'strided' mode, every frame except the query frame. Over evaluated entries only, with
  visible = ~gt_occluded, pred_visible = ~pred_occluded and within_d = |pred - gt|^2 < d^2 (strict):
    occlusion_accuracy = #(pred_occluded == gt_occluded) / #evaluated
    pts_within_d       = #(visible & within_d) / #visible          (predicted occlusion ignored)
    jaccard_d          = TP / (#visible + FP), where
                         TP = #(visible & pred_visible & within_d),
                         FP = #(pred_visible & (~visible | ~within_d))
    average_jaccard, average_pts_within_thresh = means over d in TAPVID_THRESHOLDS.
  A zero denominator (e.g. a video with no visible evaluated entry) gives NaN, as in TapNet.

  Args:
    query_points: [B, N, 3] queries (t, y, x); t is a (possibly float) frame index.
    gt_occluded: [B, N, T] bool, True where the ground-truth point is occluded.
    gt_tracks: [B, N, T, 2] ground-truth positions (x, y), raster pixels.
    pred_occluded: [B, N, T] bool, predicted occlusion.
    pred_tracks: [B, N, T, 2] predicted positions (x, y), raster pixels.
    query_mode: 'first' or 'strided' (see above).
    get_trackwise_metrics: if True, metrics are computed per track instead of per video.

  Returns:
    Dict with keys 'occlusion_accuracy', 'pts_within_{d}' and 'jaccard_{d}' for d in
    TAPVID_THRESHOLDS, 'average_jaccard' and 'average_pts_within_thresh'. Each value is a float
    array of shape [B], or [B, N] when get_trackwise_metrics is True.

  Raises:
    ValueError: for an unknown `query_mode` or a query frame outside [0, T).
  """
  query_points = np.asarray(query_points)
  gt_occluded = np.asarray(gt_occluded, dtype=bool)
  pred_occluded = np.asarray(pred_occluded, dtype=bool)
  gt_tracks = np.asarray(gt_tracks)
  pred_tracks = np.asarray(pred_tracks)
  evaluated = _evaluation_mask(query_points, gt_tracks.shape[2], query_mode)
  summing_axis = (2,) if get_trackwise_metrics else (1, 2)

  def count(mask):
    return np.sum(mask & evaluated, axis=summing_axis)

  visible = ~gt_occluded
  pred_visible = ~pred_occluded
  num_visible = count(visible)
  sq_dist = np.sum(np.square(pred_tracks - gt_tracks), axis=-1)

  metrics = {}
  # Zero denominators are allowed and give NaN, as TapNet's plain division does.
  with np.errstate(divide='ignore', invalid='ignore'):
    metrics['occlusion_accuracy'] = count(pred_occluded == gt_occluded) / count(np.True_)
    all_within, all_jaccard = [], []
    for thresh in TAPVID_THRESHOLDS:
      within = sq_dist < np.square(thresh)
      correct = within & visible
      frac_within = count(correct) / num_visible
      true_positives = count(correct & pred_visible)
      false_positives = count(pred_visible & (~visible | ~within))
      # TP + FN is simply the number of visible GT points.
      jaccard = true_positives / (num_visible + false_positives)
      metrics[f'pts_within_{thresh}'] = frac_within
      metrics[f'jaccard_{thresh}'] = jaccard
      all_within.append(frac_within)
      all_jaccard.append(jaccard)
  metrics['average_jaccard'] = np.mean(np.stack(all_jaccard, axis=0), axis=0)
  metrics['average_pts_within_thresh'] = np.mean(np.stack(all_within, axis=0), axis=0)
  return metrics


def temporal_coherence(
    gt_tracks: np.ndarray,
    gt_occluded: np.ndarray,
    pred_tracks: np.ndarray,
) -> np.ndarray:
  """OmniMotion's temporal coherence (TC, lower is better), per video.

  With the acceleration a_t = p_{t+1} - 2 p_t + p_{t-1} of a track p, TC is the mean over all
  (track, t) whose ground truth is visible at t-1, t and t+1 of ||a_pred_t - a_gt_t||_2. As in
  OmniMotion's evaluation it covers every query track (strided duplicates included), is not
  restricted to the frames `compute_tapvid_metrics` evaluates, and ignores predicted occlusion.
  Batched like `compute_tapvid_metrics`: one value per video; the benchmark number is the mean
  over videos.

  Args:
    gt_tracks: [B, N, T, 2] ground-truth positions (x, y), raster pixels (256x256 for the paper).
    gt_occluded: [B, N, T] bool, True where the ground-truth point is occluded.
    pred_tracks: [B, N, T, 2] predicted positions (x, y), same raster as `gt_tracks`.

  Returns:
    [B] float64 TC in pixels. NaN for a video with no valid (track, t) triplet (e.g. T < 3, or no
    track visible in three consecutive frames).

  Raises:
    ValueError: if the shapes are not [B, N, T, 2], [B, N, T], [B, N, T, 2].
  """
  gt_tracks = np.asarray(gt_tracks, dtype=np.float64)
  pred_tracks = np.asarray(pred_tracks, dtype=np.float64)
  gt_occluded = np.asarray(gt_occluded, dtype=bool)
  if (gt_tracks.ndim != 4 or gt_tracks.shape[-1] != 2 or pred_tracks.shape != gt_tracks.shape
      or gt_occluded.shape != gt_tracks.shape[:3]):
    raise ValueError('Expected gt_tracks [B, N, T, 2], gt_occluded [B, N, T] and pred_tracks '
                     f'[B, N, T, 2]; got {gt_tracks.shape}, {gt_occluded.shape}, '
                     f'{pred_tracks.shape}.')

  def acceleration(p):
    return p[:, :, 2:] - 2.0 * p[:, :, 1:-1] + p[:, :, :-2]

  visible = ~gt_occluded
  valid = visible[:, :, :-2] & visible[:, :, 1:-1] & visible[:, :, 2:]  # [B, N, T-2]
  error = np.linalg.norm(acceleration(pred_tracks) - acceleration(gt_tracks), axis=-1)
  num_valid = np.sum(valid, axis=(1, 2))
  # Videos without a valid triplet get NaN rather than a misleading 0.
  with np.errstate(divide='ignore', invalid='ignore'):
    return np.sum(np.where(valid, error, 0.0), axis=(1, 2)) / num_valid
