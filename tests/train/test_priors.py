"""Dominant-motion fit and motion labels (train/priors.py): a known camera, robustness, labels."""

import numpy as np

from omnimotion_jax.train import priors as global_motion

H, W, N = 40, 60, 6


def _similarity_px(scale, angle, tx, ty):
  c, s = scale * np.cos(angle), scale * np.sin(angle)
  return np.array([[c, -s, tx], [s, c, ty], [0.0, 0.0, 1.0]])


def _camera():
  """[N, 3, 3] canvas px -> frame i px: a pan with zoom and roll."""
  return np.stack([_similarity_px(1.0 + 0.03 * i, 0.02 * i, -4.0 * i, 2.5 * i) for i in range(N)])


def _flows(camera, object_shift=(6.0, -3.0)):
  """Adjacent flows of the camera motion, with an independently moving block (a third of the
  pixels) whose flow is off by `object_shift`; all pixels marked valid."""
  ys, xs = np.mgrid[0:H, 0:W]
  pix = np.stack([xs, ys, np.ones_like(xs)], -1).astype(np.float64)
  flows = []
  for i in range(N - 1):
    step = camera[i + 1] @ np.linalg.inv(camera[i])
    flow = (pix @ step.T)[..., :2] - pix[..., :2]
    flow[:, : W // 3] += np.array(object_shift)
    flows.append(flow)
  return np.stack(flows).astype(np.float16), np.ones((N - 1, H, W), bool)


def _fit(flows, valid):
  return global_motion.fit_pair_motions(flows, valid, num_points=1500, num_hypotheses=100,
                                        inlier_px=1.0)


def test_recovers_camera_despite_moving_object():
  camera = _camera()
  affines, inliers = _fit(*_flows(camera))
  assert affines.shape == (N - 1, 2, 3)
  ys, xs = np.mgrid[0:H, W // 3:W]  # Background columns.
  pix = np.stack([xs, ys, np.ones_like(xs)], -1).reshape(-1, 3).astype(np.float64)
  for i in range(N - 1):
    truth = pix @ (camera[i + 1] @ np.linalg.inv(camera[i])).T
    estimate = global_motion.apply_affine(affines[i], pix[:, :2])
    # Up to the float16 flow quantisation.
    assert np.abs(estimate - truth[:, :2]).max() < 0.1, i
  # The block moving on its own is rejected as outliers.
  assert all(0.55 < f < 0.75 for f in inliers)


def test_plain_least_squares_would_be_pulled_by_the_object():
  # Guards the robust refits: without them the object drags the fit several px away.
  flows, _ = _flows(_camera())
  ys, xs = np.mgrid[0:H, 0:W]
  src = np.stack([xs, ys], -1).reshape(-1, 2).astype(np.float64)
  dst = src + flows[0].reshape(-1, 2)
  plain = global_motion.fit_similarity(src, dst)
  robust, _ = global_motion.robust_similarity(src, dst, np.random.default_rng(0), 100, 1.0)
  background = src[:, 0] >= W // 3
  err = lambda a: np.abs(global_motion.apply_affine(a, src[background]) - dst[background]).max()
  assert err(robust) < 0.05 < 1.0 < err(plain)


def test_a_pair_without_trusted_pixels_is_motion_free():
  flows, valid = _flows(_camera())
  valid[1] = False
  affines, inliers = _fit(flows, valid)
  np.testing.assert_array_equal(affines[1], np.eye(2, 3))
  assert inliers[1] == 0.0 and inliers[0] > 0.5


def test_motion_labels_mark_the_independently_moving_block():
  camera = _camera()
  flows, valid = _flows(camera)
  valid[2, :5] = False  # Untrusted flow: unknown.
  affines, _ = global_motion.fit_pair_motions(flows, valid, num_points=1500, num_hypotheses=100,
                                              inlier_px=1.0)
  labels = global_motion.motion_labels(flows, valid, affines, threshold_px=1.0)
  assert labels.shape == (N, H, W) and labels.dtype == np.float32
  assert (labels[:-1, 5:, : W // 3] == 1).all()
  assert (labels[:-1, 5:, W // 3:] == 0).all()
  assert (labels[2, :5] == -1).all()
  np.testing.assert_array_equal(labels[-1], labels[-2])
