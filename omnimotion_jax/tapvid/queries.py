"""TAP-Vid query sampling, as TapNet's `sample_queries_first` / `sample_queries_strided` (Sec. 7.1).

Numpy only. Inputs are one video's tracks: target_occluded [N, T] bool and target_points [N, T, 2]
(x, y) in raster pixels (256x256 for the benchmark; TapNet's docstrings say [-1, 1] or [0, 1], but
its readers pass 256-raster pixels). Outputs carry a leading batch axis of 1, queries are
(t, y, x) and target points stay (x, y). The video itself is not touched (TapNet's functions also
pass the frames through; callers here keep them separately).
"""

from typing import Mapping

import numpy as np

# TAP-Vid protocol constant: 'strided' mode queries every track visible at frames 0, 5, 10, ...
QUERY_STRIDE = 5


def _query_rows(frame: np.ndarray, points: np.ndarray) -> np.ndarray:
  """[n] frame indices and [n, 2] (x, y) points -> [n, 3] float32 (t, y, x) queries."""
  return np.stack([frame, points[:, 1], points[:, 0]], axis=-1).astype(np.float32)


def sample_queries_first(
    target_occluded: np.ndarray,
    target_points: np.ndarray,
) -> Mapping[str, np.ndarray]:
  """Queries each track at its first visible frame (TAP-Vid 'first' mode).

  Tracks never visible are dropped; the others keep their original order.

  Args:
    target_occluded: [N, T] bool, True where occluded.
    target_points: [N, T, 2] positions (x, y), raster pixels.

  Returns:
    Dict with
      query_points: [1, N', 3] float32 (t, y, x), t the first visible frame of each kept track;
      target_points: [1, N', T, 2] float32 (x, y) of the kept tracks;
      occluded: [1, N', T] bool of the kept tracks.
    N' is the number of tracks with at least one visible frame (possibly 0, where TapNet would
    fail on an empty stack).
  """
  target_occluded = np.asarray(target_occluded, dtype=bool)
  target_points = np.asarray(target_points, dtype=np.float32)
  keep = np.any(~target_occluded, axis=1)
  occluded = target_occluded[keep]
  points = target_points[keep]
  # argmax finds the first True; every kept row has one.
  first_visible = np.argmax(~occluded, axis=1)
  query = _query_rows(first_visible, points[np.arange(points.shape[0]), first_visible])
  return {
      'query_points': query[np.newaxis],
      'target_points': points[np.newaxis],
      'occluded': occluded[np.newaxis],
  }


def sample_queries_strided(
    target_occluded: np.ndarray,
    target_points: np.ndarray,
    query_stride: int = QUERY_STRIDE,
) -> Mapping[str, np.ndarray]:
  """Queries every track visible at frames 0, stride, 2 * stride, ... (TAP-Vid 'strided' mode).

  A track visible at several query frames yields several queries. Queries are ordered by query
  frame first, then by original track index, as TapNet concatenates them.

  Args:
    target_occluded: [N, T] bool, True where occluded.
    target_points: [N, T, 2] positions (x, y), raster pixels.
    query_stride: frames between query frames.

  Returns:
    Dict with
      query_points: [1, Q, 3] float32 (t, y, x);
      target_points: [1, Q, T, 2] float32 (x, y), the full track of each query;
      occluded: [1, Q, T] bool, the full occlusion of each query's track;
      trackgroup: [1, Q] int64, the original track index of each query.
  """
  target_occluded = np.asarray(target_occluded, dtype=bool)
  target_points = np.asarray(target_points, dtype=np.float32)
  num_frames = target_occluded.shape[1]
  queries, trackgroups = [], []
  for t in range(0, num_frames, query_stride):
    visible = np.flatnonzero(~target_occluded[:, t])
    queries.append(_query_rows(np.full(visible.shape, t), target_points[visible, t]))
    trackgroups.append(visible)
  # T == 0 leaves the lists empty; keep the output shapes well defined.
  trackgroup = np.concatenate(trackgroups or [np.zeros(0, np.int64)]).astype(np.int64)
  query = np.concatenate(queries or [np.zeros((0, 3), np.float32)])
  return {
      'query_points': query[np.newaxis],
      'target_points': target_points[trackgroup][np.newaxis],
      'occluded': target_occluded[trackgroup][np.newaxis],
      'trackgroup': trackgroup[np.newaxis],
  }
