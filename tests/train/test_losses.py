"""Losses and schedules: hand-worked values (checkable on paper), a slow reference, gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from omnimotion_jax.train import losses

T, F = True, False

# The reference's schedule constants (`trainer.py`, train_one_step).
REF_WEIGHTS = dict(w_flow=1.0, w_rgb_ramp_steps=5000, w_rgb_max=10.0,
                   w_flow_grad_ramp_steps=500000, w_flow_grad_max=0.1, w_depth_range=10.0,
                   w_distortion_start=40000, w_distortion_ramp_steps=2000,
                   w_distortion_max=10.0, w_smooth=20.0)


def _a(x):
  return jnp.asarray(x, jnp.float32)


def _m(x):
  return jnp.asarray(x, bool)


# ------------------------------------------------------------------------------ masked_mean_l1

@pytest.mark.parametrize('mask, drop_max, expected', [
    ([T, T, T, T], True, 2.0),     # drops 10 -> mean(1, 2, 3)
    ([T, T, T, T], False, 4.0),    # keeps 10 -> 16 / 4
    ([T, T, T, F], True, 1.5),     # max over masked elements is 3 -> mean(1, 2)
    ([F, T, F, T], False, 6.0),    # mean(2, 10)
])
def test_masked_mean_l1_drop_max(mask, drop_max, expected):
  err = _a([1, 2, 3, 10])
  got = losses.masked_mean_l1(err, _m(mask), drop_max=drop_max)
  np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_masked_mean_l1_ties_at_max_all_dropped():
  err = _a([1, 5, 5, 2])
  np.testing.assert_allclose(losses.masked_mean_l1(err, _m([T] * 4), drop_max=True), 1.5)
  # All masked errors equal: everything is dropped and the loss is 0, not NaN.
  err = _a([4, 4, 7])
  np.testing.assert_allclose(losses.masked_mean_l1(err, _m([T, T, F]), drop_max=True), 0.0)


@pytest.mark.parametrize('drop_max, normalize, expected', [
    (True, False, 7 / 3),   # err*w = [2, 2, 3, 40]; drop 10's element; (2+2+3) / 3 points
    (True, True, 7 / 4),    # (2+2+3) / (2+1+1)
    (False, False, 47 / 4),
    (False, True, 47 / 8),
])
def test_masked_mean_l1_weights(drop_max, normalize, expected):
  err = _a([1, 2, 3, 10])
  w = _a([2, 1, 1, 4])
  got = losses.masked_mean_l1(err, _m([T] * 4), w, drop_max=drop_max, normalize=normalize)
  np.testing.assert_allclose(got, expected, rtol=1e-6)


@pytest.mark.parametrize('drop_max', [True, False])
@pytest.mark.parametrize('normalize', [True, False])
def test_masked_mean_l1_empty_mask_is_zero_with_finite_grad(drop_max, normalize):
  err = _a([1, 2, 3])
  w = _a([1, 0, 2])
  fn = lambda e, w: losses.masked_mean_l1(e, _m([F, F, F]), w, drop_max=drop_max,  # noqa: E731
                                          normalize=normalize)
  assert float(fn(err, w)) == 0.0
  ge, gw = jax.grad(fn, argnums=(0, 1))(err, w)
  assert np.all(np.isfinite(ge)) and np.all(np.isfinite(gw))
  # Zero weights everywhere with normalize=True: 0 / eps = 0.
  assert float(losses.masked_mean_l1(err, _m([T] * 3), jnp.zeros(3), drop_max=drop_max,
                                     normalize=normalize)) == 0.0


# ------------------------------------------------------------------------------ flow / photometric

@pytest.mark.parametrize('drop_max, expected', [(True, 0.25), (False, 1.5)])
def test_flow_loss(drop_max, expected):
  pred = _a([[0, 0], [2, 0], [0, 4], [10, 10]])
  target = jnp.zeros((4, 2))
  weights = _a([1, 0.5, 2, 1])
  # err = [0, 1, 2, 10]; the 10 is out of the image. drop_max drops the 2:
  # (0*1 + 1*0.5) / 2 = 0.25; otherwise (0 + 0.5 + 4) / 3 = 1.5 (not divided by sum w).
  got = losses.flow_loss(pred, target, weights, _m([T, T, T, F]), drop_max=drop_max)
  np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_photometric_loss():
  pred = _a([[0, 0, 0], [1, 1, 1], [9, 9, 9]])
  gt = _a([[1, 0, 0], [1, 3, 1], [0, 0, 0]])
  # Squared errors 1 + 4 over 2 points x 3 channels; the third point is masked out.
  np.testing.assert_allclose(losses.photometric_loss(pred, gt, _m([T, T, F])), 5 / 6, rtol=1e-6)
  assert float(losses.photometric_loss(pred, gt, _m([F, F, F]))) == 0.0


# ------------------------------------------------------------------------------ "gradient" losses

def test_consecutive_difference_masked_middle_point_breaks_both_pairs():
  pred = _a([[0.0], [5.0], [1.0]])
  target = _a([[0.0], [0.0], [3.0]])
  # (0,1) and (1,2) both touch the masked point: no valid pair -> 0.
  got = losses.consecutive_difference_loss(pred, target, _m([T, F, T]), None, drop_max=False,
                                           normalize=False)
  assert float(got) == 0.0
  # With the middle point valid: pair errors |5-0| = 5 and |-4-3| = 7 -> mean 6.
  got = losses.consecutive_difference_loss(pred, target, _m([T, T, T]), None, drop_max=False,
                                           normalize=False)
  np.testing.assert_allclose(got, 6.0)


# pred differences (0,1) = [1,2], (1,2) = [2,1]; target differences [2,2], [0,2];
# pair errors mean|[-1,0]| = 0.5 and mean|[2,-1]| = 1.5. Point 3 is masked, so pairs (2,3), (3,4)
# are invalid. Pair weights w0*w1 = 2 and w1*w2 = 6.
_PRED = [[0, 0], [1, 2], [3, 3], [100, 100], [7, 7]]
_TARGET = [[0, 0], [2, 2], [2, 4], [0, 0], [0, 0]]
_MASK = [T, T, T, F, T]
_W = [1, 2, 3, 9, 9]


@pytest.mark.parametrize('use_w, drop_max, normalize, expected', [
    (False, False, False, 1.0),   # (0.5 + 1.5) / 2
    (False, True, False, 0.5),    # 1.5 dropped
    (True, False, True, 1.25),    # (0.5*2 + 1.5*6) / (2 + 6)
    (True, False, False, 5.0),    # (1 + 9) / 2 pairs
    (True, True, True, 0.5),      # (0.5*2) / 2
])
def test_consecutive_difference_loss(use_w, drop_max, normalize, expected):
  w = _a(_W) if use_w else None
  got = losses.consecutive_difference_loss(_a(_PRED), _a(_TARGET), _m(_MASK), w,
                                           drop_max=drop_max, normalize=normalize)
  np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_grad_loss_wrappers():
  got = losses.flow_grad_loss(_a(_PRED), _a(_TARGET), _a(_W), _m(_MASK), drop_max=False)
  np.testing.assert_allclose(got, 1.25, rtol=1e-6)
  got = losses.flow_grad_loss(_a(_PRED), _a(_TARGET), _a(_W), _m(_MASK), drop_max=True)
  np.testing.assert_allclose(got, 0.5, rtol=1e-6)
  # RGB: 3 channels, no weights, plain mean. Differences pred [1,1,1], [0,3,0]; gt [0,0,0],
  # [0,0,0]; pair errors 1 and 1 -> ties, so drop_max drops both.
  pred = _a([[0, 0, 0], [1, 1, 1], [1, 4, 1]])
  gt = jnp.ones((3, 3))
  np.testing.assert_allclose(losses.rgb_grad_loss(pred, gt, _m([T] * 3), drop_max=False), 1.0)
  assert float(losses.rgb_grad_loss(pred, gt, _m([T] * 3), drop_max=True)) == 0.0


# ------------------------------------------------------------------------------ depth / distortion

def test_depth_range_loss():
  z = _a([[-0.5, 1.0, 2.5]])
  np.testing.assert_allclose(losses.depth_range_loss(z, 0.0, 2.0), 0.5 / 3, rtol=1e-6)
  # Two rays: (1 + 0 + 0 + 4) over 2*2 samples.
  z = _a([[-1.0, 0.0], [2.0, 4.0]])
  np.testing.assert_allclose(losses.depth_range_loss(z, 0.0, 2.0), 5 / 4, rtol=1e-6)


def _distortion_slow(w, z):
  """Double-loop numpy reference, straight from the definition."""
  w = np.asarray(w, np.float64)
  z = np.asarray(z, np.float64)
  out = []
  for wr, zr in zip(w, z):
    edges = np.concatenate([zr, zr[-1:]])
    m = 0.5 * (edges[1:] + edges[:-1])
    d = edges[1:] - edges[:-1]
    total = 0.0
    for i in range(len(wr)):
      for j in range(len(wr)):
        total += wr[i] * wr[j] * abs(m[i] - m[j])
      total += wr[i] ** 2 * d[i] / 3
    out.append(total)
  return np.mean(out)


def test_distortion_matches_double_loop():
  rng = np.random.default_rng(0)
  w = rng.uniform(0, 1, (5, 8)) / 4
  z = np.sort(rng.uniform(0, 2, (5, 8)), axis=-1)
  got = losses.distortion_loss(_a(w), _a(z))
  np.testing.assert_allclose(got, _distortion_slow(w, z), rtol=1e-5)


def test_distortion_hand_cases():
  z = _a([[0.0, 0.5, 1.5, 2.0]])   # widths [0.5, 1, 0.5, 0]
  # One-hot: only (1/3) w^2 d remains: 0.36 * 1 / 3.
  np.testing.assert_allclose(losses.distortion_loss(_a([[0, 0.6, 0, 0]]), z), 0.12, rtol=1e-6)
  # All weight on the last sample: zero-width interval -> 0.
  np.testing.assert_allclose(losses.distortion_loss(_a([[0, 0, 0, 1]]), z), 0.0, atol=1e-7)
  # z = 0..3: midpoints [0.5, 1.5, 2.5, 3]; w0 = w2 = 0.5:
  # 2 * 0.25 * |0.5 - 2.5| + (0.25 + 0.25) / 3 = 1 + 1/6.
  got = losses.distortion_loss(_a([[0.5, 0, 0.5, 0]]), _a([[0, 1, 2, 3]]))
  np.testing.assert_allclose(got, 7 / 6, rtol=1e-6)


# ------------------------------------------------------------------------------ smoothness

def _triplet(acc):
  """Points with a constant-velocity part plus a given acceleration on the next frame."""
  acc = _a(acc)
  base = jnp.arange(acc.size, dtype=jnp.float32).reshape(acc.shape) * 0.1
  vel = 0.3 - base
  return base - vel, base, base + vel + acc


def test_smoothness_constant_velocity_is_zero():
  x_prev, x, x_next = _triplet(np.zeros((2, 3, 3)))
  for drop_max in (True, False):
    got = losses.smoothness_loss(x_prev, x, x_next, _m([T, T]), drop_max=drop_max)
    np.testing.assert_allclose(got, 0.0, atol=1e-6)


@pytest.mark.parametrize('mask, drop_max, expected', [
    ([T, T], True, 4 / 3),    # sample errors [1, 1, 2, 3]; drop 3
    ([T, T], False, 7 / 4),
    ([T, F], True, 0.0),      # [1, 1]: a tie at the max, both dropped
    ([T, F], False, 1.0),
    ([F, T], True, 2.0),
])
def test_smoothness_known_acceleration(mask, drop_max, expected):
  acc = [[[1, 1, 1], [3, 0, 0]], [[0, 0, 6], [-3, 3, 3]]]
  x_prev, x, x_next = _triplet(acc)
  got = losses.smoothness_loss(x_prev, x, x_next, _m(mask), drop_max=drop_max)
  np.testing.assert_allclose(got, expected, rtol=1e-5)


# ------------------------------------------------------------------------------ schedules

@pytest.mark.parametrize('step, rgb, flow_grad, dist', [
    (0, 1 / 5000, 1 / 500000, 0.0),          # s = 1
    (4999, 1.0, 0.01, 0.0),                  # s = 5000
    (39999, 8.0, 0.08, 0.0),                 # s = 40000: distortion still off
    (40000, 8.0002, 0.080002, 1 / 2000),     # s = 40001
    (41000, 8.2002, 0.082002, 1001 / 2000),  # s = 41001
    (49999, 10.0, 0.1, 5.0),                 # s = 50000
    (59999, 10.0, 0.1, 10.0),
    (200000, 10.0, 0.1, 10.0),
])
def test_loss_weights_schedule(step, rgb, flow_grad, dist):
  eager = losses.loss_weights(step, **REF_WEIGHTS)
  jitted = jax.jit(lambda s: losses.loss_weights(s, **REF_WEIGHTS))(jnp.asarray(step, jnp.int32))
  for w in (eager, jitted):
    assert set(w) == {'flow', 'rgb', 'rgb_grad', 'flow_grad', 'depth_range', 'distortion',
                      'smooth'}
    np.testing.assert_allclose(w['rgb'], rgb, rtol=1e-5)
    np.testing.assert_allclose(w['rgb_grad'], rgb, rtol=1e-5)
    np.testing.assert_allclose(w['flow_grad'], flow_grad, rtol=1e-5)
    np.testing.assert_allclose(w['distortion'], dist, rtol=1e-5)
    np.testing.assert_allclose(w['flow'], 1.0)
    np.testing.assert_allclose(w['depth_range'], 10.0)
    np.testing.assert_allclose(w['smooth'], 20.0)


def test_total_loss():
  w = losses.loss_weights(4999, **REF_WEIGHTS)
  terms = {'flow': _a(2.0), 'rgb': _a(3.0), 'smooth': _a(0.5)}
  # Keys of `terms` only: 1*2 + 1*3 + 20*0.5.
  np.testing.assert_allclose(losses.total_loss(terms, w), 15.0, rtol=1e-6)


# ------------------------------------------------------------------------------ gradients

_MASKS = {'all': [T] * 6, 'none': [F] * 6, 'one': [F, F, T, F, F, F], 'pair': [F, T, T, F, F, F]}


def _all_terms(px_a, rgb_a, w, z, wk, xs, px_b, rgb_b, mask):
  return {
      'flow': losses.flow_loss(px_a, px_b, w, mask, drop_max=True),
      'rgb': losses.photometric_loss(rgb_a, rgb_b, mask),
      'rgb_grad': losses.rgb_grad_loss(rgb_a, rgb_b, mask, drop_max=True),
      'flow_grad': losses.flow_grad_loss(px_a, px_b, w, mask, drop_max=True),
      'depth_range': losses.depth_range_loss(z, 0.0, 2.0),
      'distortion': losses.distortion_loss(wk, z),
      'smooth': losses.smoothness_loss(xs[0], xs[1], xs[2], mask, drop_max=True),
  }


@jax.jit
def _values_and_grads(args, consts, weights):
  """Every term, the gradient of each term and of the weighted total w.r.t. the float inputs."""
  values = _all_terms(*args, *consts)
  per_term = jax.jacrev(lambda a: _all_terms(*a, *consts))(args)
  total = jax.grad(lambda a: losses.total_loss(_all_terms(*a, *consts), weights))(args)
  return values, per_term, total


@pytest.mark.parametrize('mask_name', list(_MASKS))
def test_all_losses_have_finite_gradients(mask_name):
  # One jitted program for all mask cases (the mask is a traced argument): fast on 2 CPU cores.
  mask = _m(_MASKS[mask_name])
  keys = jax.random.split(jax.random.PRNGKey(0), 8)
  m, k = 6, 4
  px_a = jax.random.normal(keys[0], (m, 2))
  px_b = jax.random.normal(keys[1], (m, 2))
  rgb_a = jax.random.uniform(keys[2], (m, 3))
  rgb_b = jax.random.uniform(keys[3], (m, 3))
  w = jax.random.uniform(keys[4], (m,))
  z = jnp.sort(jax.random.uniform(keys[5], (m, k), minval=-0.5, maxval=2.5), axis=-1)
  wk = jax.random.uniform(keys[6], (m, k)) / k
  xs = jax.random.normal(keys[7], (3, m, k, 3))
  weights = losses.loss_weights(50000, **REF_WEIGHTS)

  values, per_term, total = _values_and_grads((px_a, rgb_a, w, z, wk, xs), (px_b, rgb_b, mask),
                                              weights)
  for name, v in values.items():
    assert np.isfinite(float(v)), name
  if mask_name == 'none':
    for name in ('flow', 'rgb', 'rgb_grad', 'flow_grad', 'smooth'):
      assert float(values[name]) == 0.0, name
  for name, grads in per_term.items():
    for g in grads:
      assert np.all(np.isfinite(np.asarray(g))), name
  for g in total:
    assert np.all(np.isfinite(np.asarray(g)))
