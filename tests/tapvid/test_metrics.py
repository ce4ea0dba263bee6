"""Tests of the TAP-Vid metrics, OmniMotion's TC and TAP-Vid query sampling.

Hand-worked cases assert exact numbers that can be checked on paper; seeded random cases compare
against slow, loop-by-loop reference implementations written here from the metric definitions.
"""

import math

import numpy as np
import pytest

from omnimotion_jax import tapvid
from omnimotion_jax.tapvid import metrics as metrics_lib
from omnimotion_jax.tapvid import queries as queries_lib

THRESHOLDS = (1, 2, 4, 8, 16)
METRIC_KEYS = (['occlusion_accuracy', 'average_jaccard', 'average_pts_within_thresh']
               + [f'pts_within_{d}' for d in THRESHOLDS] + [f'jaccard_{d}' for d in THRESHOLDS])
FAR = 100.0  # px: an error beyond every threshold


def _straight_tracks(num_tracks, num_frames):
  """[N, T, 2] float64 (x, y): track n moves by (1 + n, 2) px per frame from (10 n, 20)."""
  t = np.arange(num_frames, dtype=np.float64)
  n = np.arange(num_tracks, dtype=np.float64)[:, None]
  return np.stack([10.0 * n + (1.0 + n) * t, 20.0 + 2.0 * t + 0.0 * n], axis=-1)


def _single_video(gt_tracks, gt_occluded, pred_tracks, pred_occluded, query_frames, mode,
                  trackwise=False):
  """Wraps one video's [N, ...] arrays in a batch of 1 and runs the metrics."""
  gt_tracks = np.asarray(gt_tracks, np.float64)
  query_frames = np.asarray(query_frames, np.float64)
  qidx = np.round(query_frames).astype(int)
  first = gt_tracks[np.arange(gt_tracks.shape[0]), qidx]
  query_points = np.stack([query_frames, first[:, 1], first[:, 0]], axis=-1)
  return tapvid.compute_tapvid_metrics(
      query_points[None], np.asarray(gt_occluded, bool)[None], gt_tracks[None],
      np.asarray(pred_occluded, bool)[None], np.asarray(pred_tracks, np.float64)[None], mode,
      get_trackwise_metrics=trackwise)


def _scalars(result):
  """Batch of 1 -> dict of Python floats."""
  assert all(v.shape == (1,) for v in result.values())
  return {k: float(v[0]) for k, v in result.items()}


# ---------------------------------------------------------------------------------------------
# compute_tapvid_metrics: hand-worked cases.


def test_output_keys_and_shapes():
  gt = _straight_tracks(3, 6)
  occ = np.zeros((3, 6), bool)
  result = _single_video(gt, occ, gt, occ, [0, 1, 2], 'strided')
  assert sorted(result) == sorted(METRIC_KEYS)
  trackwise = _single_video(gt, occ, gt, occ, [0, 1, 2], 'strided', trackwise=True)
  assert sorted(trackwise) == sorted(METRIC_KEYS)
  assert all(v.shape == (1, 3) for v in trackwise.values())


@pytest.mark.parametrize('mode', ['first', 'strided'])
def test_perfect_prediction_scores_one(mode):
  gt = _straight_tracks(2, 5)
  occ = np.array([[False, False, True, False, False],
                  [False, True, False, False, False]])
  result = _scalars(_single_video(gt, occ, gt, occ, [0, 0], mode))
  assert result == {k: 1.0 for k in METRIC_KEYS}


def test_one_predicted_occlusion_flip():
  # 1 track, all GT visible, query frame 0, 'strided' -> frames 1..4 evaluated (4 entries).
  gt = _straight_tracks(1, 5)
  occ = np.zeros((1, 5), bool)
  pred_occ = occ.copy()
  pred_occ[0, 2] = True  # one wrong "occluded"
  result = _scalars(_single_video(gt, occ, gt, pred_occ, [0], 'strided'))
  assert result['occlusion_accuracy'] == 3 / 4
  for d in THRESHOLDS:
    assert result[f'pts_within_{d}'] == 1.0  # predicted occlusion is ignored here
    assert result[f'jaccard_{d}'] == 3 / 4  # TP 3 / (visible 4 + FP 0)
  assert result['average_jaccard'] == 3 / 4


def test_predicted_visible_where_gt_occluded_is_a_false_positive():
  gt = _straight_tracks(1, 5)
  occ = np.zeros((1, 5), bool)
  occ[0, 3] = True
  pred_occ = np.zeros((1, 5), bool)  # wrongly visible at frame 3
  result = _scalars(_single_video(gt, occ, gt, pred_occ, [0], 'strided'))
  assert result['occlusion_accuracy'] == 3 / 4
  for d in THRESHOLDS:
    assert result[f'pts_within_{d}'] == 1.0  # 3 visible, all within
    assert result[f'jaccard_{d}'] == 3 / 4  # TP 3 / (visible 3 + FP 1)


def test_far_prediction_is_both_false_positive_and_miss():
  # 1 track, T=3, query 0 -> frames 1, 2 evaluated; frame 2 is FAR off but predicted visible.
  gt = _straight_tracks(1, 3)
  pred = gt.copy()
  pred[0, 2, 0] += FAR
  occ = np.zeros((1, 3), bool)
  result = _scalars(_single_video(gt, occ, pred, occ, [0], 'strided'))
  assert result['occlusion_accuracy'] == 1.0
  for d in THRESHOLDS:
    assert result[f'pts_within_{d}'] == 1 / 2
    assert result[f'jaccard_{d}'] == 1 / 3  # TP 1 / (visible 2 + FP 1)


@pytest.mark.parametrize('offset, expected_within', [
    ((0.999, 0.0), (1, 1, 1, 1, 1)),
    ((1.0, 0.0), (0, 1, 1, 1, 1)),  # strict "<": exactly delta is outside
    ((0.0, -1.0), (0, 1, 1, 1, 1)),
    ((0.0, 1.999), (0, 1, 1, 1, 1)),
    ((2.0, 0.0), (0, 0, 1, 1, 1)),
    ((0.0, 16.0), (0, 0, 0, 0, 0)),
    ((15.999, 0.0), (0, 0, 0, 0, 1)),
])
def test_threshold_is_strict(offset, expected_within):
  # 1 track, T=2, query 0 -> only frame 1 evaluated.
  gt = _straight_tracks(1, 2)
  pred = gt.copy()
  pred[0, 1] += offset
  occ = np.zeros((1, 2), bool)
  result = _scalars(_single_video(gt, occ, pred, occ, [0], 'first'))
  for d, within in zip(THRESHOLDS, expected_within):
    assert result[f'pts_within_{d}'] == within
    # One visible entry: inside -> TP 1 / 1; outside -> TP 0 / (1 + FP 1).
    assert result[f'jaccard_{d}'] == within
  assert result['average_pts_within_thresh'] == sum(expected_within) / 5
  assert result['average_jaccard'] == sum(expected_within) / 5


def test_query_frame_excluded_in_both_modes():
  # Query frame 2 of 5; the prediction is FAR off (and its occlusion wrong) only there.
  gt = _straight_tracks(1, 5)
  pred = gt.copy()
  pred[0, 2, 1] += FAR
  occ = np.zeros((1, 5), bool)
  pred_occ = occ.copy()
  pred_occ[0, 2] = True
  for mode in ('first', 'strided'):
    result = _scalars(_single_video(gt, occ, pred, pred_occ, [2], mode))
    assert result == {k: 1.0 for k in METRIC_KEYS}, mode


def test_frames_before_query_only_count_in_strided():
  # Query frame 2 of 5; frame 0 is FAR off and predicted occluded while GT is visible.
  gt = _straight_tracks(1, 5)
  pred = gt.copy()
  pred[0, 0, 0] -= FAR
  occ = np.zeros((1, 5), bool)
  pred_occ = occ.copy()
  pred_occ[0, 0] = True
  first = _scalars(_single_video(gt, occ, pred, pred_occ, [2], 'first'))
  assert first == {k: 1.0 for k in METRIC_KEYS}  # frames 3, 4 only
  strided = _scalars(_single_video(gt, occ, pred, pred_occ, [2], 'strided'))  # frames 0, 1, 3, 4
  assert strided['occlusion_accuracy'] == 3 / 4
  for d in THRESHOLDS:
    assert strided[f'pts_within_{d}'] == 3 / 4
    assert strided[f'jaccard_{d}'] == 3 / 4  # TP 3 / (visible 4 + FP 0): frame 0 is a miss


@pytest.mark.parametrize('query_frame, rounded', [(1.6, 2), (1.4, 1), (2.5, 2), (3.5, 4)])
def test_query_frame_is_rounded_half_to_even(query_frame, rounded):
  # T=6; the prediction is wrong only at frame `rounded`, so every metric is 1 iff that frame is
  # the (excluded) query frame.
  gt = _straight_tracks(1, 6)
  pred = gt.copy()
  pred[0, rounded, 0] += FAR
  occ = np.zeros((1, 6), bool)
  gt_first = gt[0, rounded]
  query_points = np.array([[[query_frame, gt_first[1], gt_first[0]]]])
  result = tapvid.compute_tapvid_metrics(query_points, occ[None], gt[None], occ[None], pred[None],
                                         'strided')
  assert _scalars(result) == {k: 1.0 for k in METRIC_KEYS}


def test_metrics_are_per_video_not_pooled():
  # Video 0: 1 track, 2 evaluated frames, 1 far. Video 1: perfect. Pooling would mix them.
  gt = np.stack([_straight_tracks(1, 3)] * 2)
  pred = gt.copy()
  pred[0, 0, 2, 0] += FAR
  occ = np.zeros((2, 1, 3), bool)
  query_points = np.zeros((2, 1, 3))
  result = tapvid.compute_tapvid_metrics(query_points, occ, gt, occ, pred, 'first')
  np.testing.assert_array_equal(result['pts_within_4'], [1 / 2, 1.0])
  np.testing.assert_array_equal(result['jaccard_4'], [1 / 3, 1.0])
  np.testing.assert_array_equal(result['occlusion_accuracy'], [1.0, 1.0])


def test_trackwise_metrics():
  # Track 0 perfect; track 1 FAR off at frame 1 of 3 (query 0 -> frames 1, 2 evaluated).
  gt = _straight_tracks(2, 3)
  pred = gt.copy()
  pred[1, 1, 0] += FAR
  occ = np.zeros((2, 3), bool)
  result = _single_video(gt, occ, pred, occ, [0, 0], 'first', trackwise=True)
  np.testing.assert_array_equal(result['pts_within_8'], [[1.0, 1 / 2]])
  np.testing.assert_array_equal(result['jaccard_8'], [[1.0, 1 / 3]])
  np.testing.assert_array_equal(result['average_jaccard'], [[1.0, 1 / 3]])
  video = _scalars(_single_video(gt, occ, pred, occ, [0, 0], 'first'))
  assert video['pts_within_8'] == 3 / 4  # pooled over the video's tracks, not a mean of tracks
  assert video['jaccard_8'] == 3 / 5


def test_no_visible_evaluated_entry_gives_nan():
  gt = _straight_tracks(1, 3)
  occ = np.array([[False, True, True]])
  result = _scalars(_single_video(gt, occ, gt, occ, [0], 'first'))
  assert result['occlusion_accuracy'] == 1.0
  assert math.isnan(result['pts_within_1'])
  assert math.isnan(result['jaccard_1'])  # 0 / (0 + 0)
  assert math.isnan(result['average_jaccard'])


def test_unknown_query_mode_raises():
  gt = _straight_tracks(1, 3)
  occ = np.zeros((1, 3), bool)
  with pytest.raises(ValueError, match='query mode'):
    _single_video(gt, occ, gt, occ, [0], 'last')


def test_query_frame_out_of_range_raises():
  gt = _straight_tracks(1, 3)
  occ = np.zeros((1, 3), bool)
  query_points = np.array([[[3.0, 0.0, 0.0]]])
  with pytest.raises(ValueError, match='Query frames'):
    tapvid.compute_tapvid_metrics(query_points, occ[None], gt[None], occ[None], gt[None], 'first')


# ---------------------------------------------------------------------------------------------
# compute_tapvid_metrics: seeded random cases against a loop-by-loop reference.


def _reference_metrics(query_points, gt_occ, gt_tracks, pred_occ, pred_tracks, mode, trackwise):
  """Pure-Python TAP-Vid metrics straight from the definitions; [B] or [B][N] lists of floats."""

  def ratio(num, den):
    return num / den if den else float('nan')

  num_videos, num_tracks, num_frames = gt_occ.shape
  out = {k: [] for k in METRIC_KEYS}
  for b in range(num_videos):
    groups = [[n] for n in range(num_tracks)] if trackwise else [list(range(num_tracks))]
    per_group = {k: [] for k in METRIC_KEYS}
    for tracks in groups:
      entries = []
      for n in tracks:
        q = int(round(float(query_points[b, n, 0])))  # Python rounds half to even too
        for t in range(num_frames):
          if (t > q) if mode == 'first' else (t != q):
            dx = float(pred_tracks[b, n, t, 0]) - float(gt_tracks[b, n, t, 0])
            dy = float(pred_tracks[b, n, t, 1]) - float(gt_tracks[b, n, t, 1])
            entries.append((not gt_occ[b, n, t], not pred_occ[b, n, t], dx * dx + dy * dy))
      agree = sum(1 for vis, pvis, _ in entries if vis == pvis)
      per_group['occlusion_accuracy'].append(ratio(agree, len(entries)))
      jac, within = [], []
      for d in THRESHOLDS:
        visible = tp = fp = correct = 0
        for vis, pvis, sq in entries:
          close = sq < d * d
          visible += vis
          correct += vis and close
          tp += vis and pvis and close
          fp += pvis and (not vis or not close)
        within.append(ratio(correct, visible))
        jac.append(ratio(tp, visible + fp))
        per_group[f'pts_within_{d}'].append(within[-1])
        per_group[f'jaccard_{d}'].append(jac[-1])
      per_group['average_jaccard'].append(sum(jac) / len(jac))
      per_group['average_pts_within_thresh'].append(sum(within) / len(within))
    for k in METRIC_KEYS:
      out[k].append(per_group[k] if trackwise else per_group[k][0])
  return out


def _random_case(seed, num_videos=3, num_tracks=6, num_frames=9):
  rng = np.random.default_rng(seed)
  gt_tracks = rng.uniform(0.0, 256.0, (num_videos, num_tracks, num_frames, 2))
  # Errors of a few px straddle several thresholds; a few integer offsets land exactly on them.
  noise = rng.normal(0.0, 5.0, gt_tracks.shape)
  exact = rng.random(gt_tracks.shape[:3]) < 0.1
  noise[exact] = np.stack([rng.choice(THRESHOLDS, exact.sum()), np.zeros(exact.sum())], -1)
  pred_tracks = gt_tracks + noise
  gt_occ = rng.random(gt_tracks.shape[:3]) < 0.3
  pred_occ = np.where(rng.random(gt_occ.shape) < 0.2, ~gt_occ, gt_occ)
  # Float query frames, some exactly on a .5 to exercise rounding.
  query_t = rng.integers(0, num_frames, (num_videos, num_tracks)) + rng.choice(
      [0.0, 0.3, -0.3, 0.5], (num_videos, num_tracks))
  query_t = np.clip(query_t, 0.0, num_frames - 1)
  query_points = np.concatenate([query_t[..., None], rng.uniform(0, 256, query_t.shape + (2,))],
                                axis=-1)
  return query_points, gt_occ, gt_tracks, pred_occ, pred_tracks


@pytest.mark.parametrize('seed', [0, 1, 2])
@pytest.mark.parametrize('mode', ['first', 'strided'])
@pytest.mark.parametrize('trackwise', [False, True])
def test_random_cases_match_reference(seed, mode, trackwise):
  args = _random_case(seed)
  result = tapvid.compute_tapvid_metrics(*args, mode, get_trackwise_metrics=trackwise)
  expected = _reference_metrics(*args, mode, trackwise)
  for k in METRIC_KEYS:
    np.testing.assert_allclose(result[k], np.array(expected[k]), rtol=1e-12, atol=0, err_msg=k)


# ---------------------------------------------------------------------------------------------
# temporal_coherence.


def _tc_single(gt, occ, pred):
  value = tapvid.temporal_coherence(gt[None], occ[None], pred[None])
  assert value.shape == (1,)
  return float(value[0])


def test_tc_zero_for_perfect_and_for_constant_velocity_errors():
  gt = _straight_tracks(3, 7)
  occ = np.zeros((3, 7), bool)
  assert _tc_single(gt, occ, gt) == 0.0
  # A constant offset plus a constant drift has zero acceleration: TC stays 0.
  t = np.arange(7.0)[None, :, None]
  drift = np.array([3.0, -2.0]) + t * np.array([0.5, 0.25])
  assert _tc_single(gt, occ, gt + drift) == 0.0


def test_tc_single_perturbation():
  # Frame 2 of 5 moved by (3, 4) (norm 5): acceleration errors at t = 1, 2, 3 are 5, 10, 5.
  gt = _straight_tracks(1, 5)
  pred = gt.copy()
  pred[0, 2] += (3.0, 4.0)
  occ = np.zeros((1, 5), bool)
  assert _tc_single(gt, occ, pred) == pytest.approx(20.0 / 3.0, rel=1e-12)


def test_tc_occlusion_gating():
  gt = _straight_tracks(1, 5)
  pred = gt.copy()
  pred[0, 2] += (3.0, 4.0)
  occ = np.array([[True, False, False, False, False]])  # drops the triplet centred on t = 1
  assert _tc_single(gt, occ, pred) == pytest.approx(7.5, rel=1e-12)
  occ = np.array([[True, False, False, False, True]])  # only t = 2 is left
  assert _tc_single(gt, occ, pred) == pytest.approx(10.0, rel=1e-12)
  occ = np.array([[False, False, True, False, False]])  # frame 2 is in every triplet
  assert math.isnan(_tc_single(gt, occ, pred))


def test_tc_mean_over_tracks_and_times_per_video():
  # Video 0: track 0 has the (3, 4) bump (errors 5, 10, 5), track 1 is perfect (0, 0, 0).
  # Video 1: perfect. Mean over the 6 valid (track, t) of video 0 is 20 / 6.
  gt = np.stack([_straight_tracks(2, 5)] * 2)
  pred = gt.copy()
  pred[0, 0, 2] += (3.0, 4.0)
  occ = np.zeros((2, 2, 5), bool)
  np.testing.assert_allclose(tapvid.temporal_coherence(gt, occ, pred), [20.0 / 6.0, 0.0],
                             rtol=1e-12)


def test_tc_nan_without_triplets_and_bad_shapes():
  gt = _straight_tracks(2, 2)
  assert math.isnan(_tc_single(gt, np.zeros((2, 2), bool), gt))
  with pytest.raises(ValueError):
    tapvid.temporal_coherence(gt, np.zeros((2, 2), bool), gt)  # missing batch axis


def test_tc_random_matches_reference():
  rng = np.random.default_rng(3)
  gt = rng.uniform(0, 256, (2, 5, 8, 2))
  pred = gt + rng.normal(0, 2, gt.shape)
  occ = rng.random(gt.shape[:3]) < 0.2
  expected = []
  for b in range(2):
    errors = []
    for n in range(5):
      for t in range(1, 7):
        if not (occ[b, n, t - 1] or occ[b, n, t] or occ[b, n, t + 1]):
          acc = [pred[b, n, t + 1, i] - 2 * pred[b, n, t, i] + pred[b, n, t - 1, i]
                 - (gt[b, n, t + 1, i] - 2 * gt[b, n, t, i] + gt[b, n, t - 1, i]) for i in (0, 1)]
          errors.append(math.hypot(*acc))
    expected.append(sum(errors) / len(errors))
  np.testing.assert_allclose(tapvid.temporal_coherence(gt, occ, pred), expected, rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# convert_grid_coordinates.


def test_convert_grid_coordinates():
  xy = np.array([[10.0, 20.0], [0.0, 255.0]])
  np.testing.assert_array_equal(
      tapvid.convert_grid_coordinates(xy, (512, 128), (256, 256)), [[5.0, 40.0], [0.0, 510.0]])
  tyx = np.array([3.0, 20.0, 10.0])
  np.testing.assert_array_equal(
      tapvid.convert_grid_coordinates(tyx, (8, 128, 512), (8, 256, 256), 'tyx'), [3.0, 40.0, 5.0])
  with pytest.raises(ValueError):
    tapvid.convert_grid_coordinates(xy, (512, 128), (256, 256), 'yx')
  with pytest.raises(ValueError):
    tapvid.convert_grid_coordinates(xy, (8, 512, 128), (8, 256, 256), 'xy')
  with pytest.raises(ValueError):
    tapvid.convert_grid_coordinates(tyx, (8, 128, 512), (9, 256, 256), 'tyx')


# ---------------------------------------------------------------------------------------------
# Query sampling.


def _numbered_points(num_tracks, num_frames):
  """[N, T, 2] float32 with point (n, t) = (x, y) = (10 n + t, 100 + 10 n + t): all distinct."""
  n = np.arange(num_tracks)[:, None]
  t = np.arange(num_frames)[None, :]
  return np.stack([10 * n + t, 100 + 10 * n + t], axis=-1).astype(np.float32)


def test_sample_queries_first():
  occ = np.array([[True, True, False, False],
                  [True, True, True, True],  # never visible: dropped
                  [False, True, False, True]])
  points = _numbered_points(3, 4)
  out = tapvid.sample_queries_first(occ, points)
  assert sorted(out) == ['occluded', 'query_points', 'target_points']
  # Track 0 first visible at t=2: (x, y) = (2, 102); track 2 at t=0: (20, 120).
  np.testing.assert_array_equal(out['query_points'], [[[2, 102, 2], [0, 120, 20]]])
  np.testing.assert_array_equal(out['target_points'], points[[0, 2]][None])
  np.testing.assert_array_equal(out['occluded'], occ[[0, 2]][None])
  assert out['query_points'].dtype == np.float32
  assert out['target_points'].dtype == np.float32
  assert out['occluded'].dtype == bool


def test_sample_queries_first_all_occluded_is_empty():
  out = tapvid.sample_queries_first(np.ones((2, 3), bool), _numbered_points(2, 3))
  assert out['query_points'].shape == (1, 0, 3)
  assert out['target_points'].shape == (1, 0, 3, 2)
  assert out['occluded'].shape == (1, 0, 3)


def test_sample_queries_strided_order_and_trackgroup():
  occ = np.array([[False, True, True, False, False],   # visible at query frames 0, 4
                  [True, True, False, True, False],    # 2, 4
                  [False, False, False, False, False],  # 0, 2, 4
                  [True, False, True, False, True]])   # never at a query frame
  points = _numbered_points(4, 5)
  out = tapvid.sample_queries_strided(occ, points, query_stride=2)
  assert sorted(out) == ['occluded', 'query_points', 'target_points', 'trackgroup']
  # Query frame major, original track index minor.
  expected_group = [0, 2, 1, 2, 0, 1, 2]
  expected_t = [0, 0, 2, 2, 4, 4, 4]
  np.testing.assert_array_equal(out['trackgroup'], [expected_group])
  expected_queries = [[t, 100 + 10 * n + t, 10 * n + t] for n, t in zip(expected_group, expected_t)]
  np.testing.assert_array_equal(out['query_points'], [expected_queries])
  np.testing.assert_array_equal(out['target_points'], points[expected_group][None])
  np.testing.assert_array_equal(out['occluded'], occ[expected_group][None])
  assert out['query_points'].dtype == np.float32
  assert out['target_points'].dtype == np.float32


def test_sample_queries_strided_default_stride_is_five():
  assert queries_lib.QUERY_STRIDE == 5
  occ = np.ones((2, 11), bool)
  occ[0, [0, 5, 10]] = False  # every default query frame
  occ[1, [1, 4, 6, 9]] = False  # none of them
  out = tapvid.sample_queries_strided(occ, _numbered_points(2, 11))
  np.testing.assert_array_equal(out['trackgroup'], [[0, 0, 0]])
  np.testing.assert_array_equal(out['query_points'][0, :, 0], [0, 5, 10])


def test_sampled_queries_with_perfect_prediction_score_one():
  rng = np.random.default_rng(5)
  occ = rng.random((6, 12)) < 0.4
  points = rng.uniform(0, 256, (6, 12, 2)).astype(np.float32)
  for mode, sample in (('first', tapvid.sample_queries_first),
                       ('strided', tapvid.sample_queries_strided)):
    s = sample(occ, points)
    result = tapvid.compute_tapvid_metrics(s['query_points'], s['occluded'], s['target_points'],
                                           s['occluded'], s['target_points'], mode)
    assert _scalars(result) == {k: 1.0 for k in METRIC_KEYS}, mode


def test_protocol_constants_are_tapnets():
  # TapNet (evaluation_datasets.compute_tapvid_metrics, sample_queries_strided): thresholds of
  # 1-16 px at 256x256, and strided queries at every 5th frame, by default.
  assert metrics_lib.TAPVID_THRESHOLDS == (1, 2, 4, 8, 16)
  occ = np.zeros((2, 12), bool)
  points = np.zeros((2, 12, 2), np.float32)
  frames = queries_lib.sample_queries_strided(occ, points)['query_points'][0, :, 0]
  np.testing.assert_array_equal(frames, [0, 0, 5, 5, 10, 10])
