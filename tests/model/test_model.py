"""Model core: exact invertibility, compositing, pixel mapping, gradients, parameter counts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from omnimotion_jax.model import geometry
from omnimotion_jax.model import render
from omnimotion_jax.model import model as model_lib
from omnimotion_jax.config import load_config
from omnimotion_jax.model.gabor import gamma_sample


def _model(name='default', **bijection_overrides):
  config = load_config(name)
  with config.unlocked():
    for k, v in bijection_overrides.items():
      config.model.bijection[k] = v
  return model_lib.OmniMotion(model_lib.model_config(config.model))


def _perturbed_params(model, seed, scale=0.05):
  """Initial params plus noise, so the maps are far from what any init symmetry would give."""
  params = model_lib.init_params(model, jax.random.PRNGKey(seed))

  @jax.jit
  def perturb(params, key):
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(key, len(leaves))
    leaves = [p + scale * jnp.std(p) * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)]
    return jax.tree_util.tree_unflatten(treedef, leaves)

  return perturb(params, jax.random.PRNGKey(seed + 1))


@pytest.fixture(scope='module', params=['affine', 'no_affine'])
def model_and_params(request):
  # The paper's model (affine layers, six couplings) at full size; the coupling without the
  # affine layers at cpu_tiny's size (what it changes does not depend on the width, and a second
  # paper-size model would double the compile time of this file).
  if request.param == 'affine':
    model = _model(use_affine=True)
  else:
    model = _model('cpu_tiny', use_affine=False)
  return model, _perturbed_params(model, seed=3)


def test_round_trip_is_exact(model_and_params):
  model, params = model_and_params
  fwd = jax.jit(lambda p, x, t: model.apply({'params': p}, x, t,
                                            method=model_lib.OmniMotion.to_canonical))
  inv = jax.jit(lambda p, y, t: model.apply({'params': p}, y, t,
                                            method=model_lib.OmniMotion.to_local))
  key = jax.random.PRNGKey(0)
  x = jax.random.uniform(key, (10_000, 3), minval=jnp.array([-1., -1., 0.]),
                         maxval=jnp.array([1., 1., 2.]))
  moved = []
  for frame in (0, 7, 12.4, 19):  # 12.4: a time between two frames.
    t = jnp.full((10_000, 1), (frame + 1) / 20)
    y = fwd(params, x, t)
    back = inv(params, y, t)
    assert float(jnp.max(jnp.abs(back - x))) < 1e-5
    moved.append(float(jnp.max(jnp.abs(y - x))))
  # A round trip through the identity would pass trivially: the maps must actually move points.
  assert min(moved) > 1e-2


def test_self_mapping_with_max_weight_sample_returns_input(model_and_params):
  model, params = model_and_params
  video = render.VideoShape(num_frames=12, height=48, width=64)
  px = jax.random.uniform(jax.random.PRNGKey(1), (256, 2)) * jnp.array([63., 47.])
  frames = jnp.arange(256) % 12
  out = jax.jit(lambda p, px, f: render.map_pixels(model, p, px, f, f, video))(params, px, frames)
  assert float(jnp.max(jnp.abs(out['px_max'] - px))) < 1e-3


def _composite_reference(sigma, eps):
  """Slow loop version of alpha compositing with an exclusive transmittance product."""
  sigma = np.asarray(sigma, np.float64)
  w = np.zeros_like(sigma)
  for r in range(sigma.shape[0]):
    trans = 1.0
    for k in range(sigma.shape[1]):
      alpha = 1.0 - np.exp(-sigma[r, k])
      w[r, k] = alpha * trans
      trans *= 1.0 - alpha + eps
  return w


def test_compositing_weights_match_reference_and_are_bounded():
  rng = np.random.default_rng(0)
  sigma = rng.exponential(0.5, size=(64, 32)).astype(np.float32)
  sigma[:4] *= 50.0  # Saturated rays.
  w = np.asarray(render.compositing_weights(jnp.asarray(sigma), 1e-10))
  np.testing.assert_allclose(w, _composite_reference(sigma, 1e-10), rtol=1e-5, atol=1e-6)
  assert (w >= 0).all()
  assert (w.sum(-1) <= 1.0 + 1e-6).all()
  values = rng.normal(size=(64, 32, 3)).astype(np.float32)
  np.testing.assert_allclose(render.composite(jnp.asarray(w), jnp.asarray(values)),
                             np.einsum('rk,rkc->rc', w, values), rtol=1e-5, atol=1e-5)


def test_gradients_through_pixel_mapping_are_finite(model_and_params):
  model, params = model_and_params
  video = render.VideoShape(num_frames=10, height=32, width=40)
  px = jax.random.uniform(jax.random.PRNGKey(2), (64, 2)) * jnp.array([39., 31.])
  src = jnp.arange(64) % 10
  tgt = (src + 3) % 10

  def scalar(p):
    out = render.map_pixels(model, p, px, src, tgt, video, key=jax.random.PRNGKey(4))
    occ = render.occlusion_score(model, p, out['px_max'], tgt, out['depth_max'], video, 0.07)
    return (jnp.sum(out['px_mean']) + jnp.sum(out['rgb']) + jnp.sum(out['depth_mean'])
            + jnp.sum(occ))

  grads = jax.jit(jax.grad(scalar))(params)
  leaves = jax.tree_util.tree_leaves(grads)
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
  assert sum(float(jnp.sum(jnp.abs(g))) for g in leaves) > 0


def test_occlusion_score_counts_only_weights_in_front():
  w = jnp.array([[0.1, 0.2, 0.3, 0.4]])
  z = jnp.array([[0.0, 1.0, 2.0, 3.0]])
  score = render.occlusion_from_weights(w, z, jnp.array([2.0]), margin=0.5)
  np.testing.assert_allclose(score, [0.3], rtol=1e-6)
  model = _model()
  assert render.occlusion_margin(model, 1.1) == pytest.approx(1.1 * 2.0 / 32)


def test_depth_samples_deterministic_and_stratified():
  z = geometry.depth_samples(3, 32, 0.0, 2.0)
  np.testing.assert_allclose(z[0], np.linspace(0, 2, 32), rtol=1e-6)
  zs = geometry.depth_samples(1000, 32, 0.0, 2.0, key=jax.random.PRNGKey(0))
  mids = 0.5 * (z[0, 1:] + z[0, :-1])
  lower = np.concatenate([[0.0], mids])
  upper = np.concatenate([mids, [2.0]])
  assert (zs >= lower - 1e-6).all() and (zs <= upper + 1e-6).all()
  # Stratified samples fill their bins (not stuck at the deterministic depths).
  assert float(jnp.std(zs[:, 5])) > 0.01


def test_pixel_normalisation_round_trip_and_corners():
  px = jnp.array([[0.0, 0.0], [63.0, 47.0], [31.5, 23.5]])
  uv = geometry.pixels_to_normalized(px, 48, 64)
  np.testing.assert_allclose(uv, [[-1, -1], [1, 1], [0, 0]], atol=1e-6)
  np.testing.assert_allclose(geometry.normalized_to_pixels(uv, 48, 64), px, atol=1e-5)


def test_contraction_is_continuous_bounded_and_differentiable():
  x = jnp.array([[0.0, 0.0, 0.0], [0.5, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0 + 1e-4, 0, 0],
                 [100.0, 0, 0]])
  c = geometry.contract(x)
  np.testing.assert_allclose(c[:3], x[:3])
  assert abs(float(c[3, 0]) - 1.0) < 1e-3
  assert float(jnp.linalg.norm(c[4])) < 2.0
  g = jax.grad(lambda x: jnp.sum(geometry.contract(x)))(x)
  assert bool(jnp.all(jnp.isfinite(g)))


def test_parameter_counts_match_reference():
  model = _model()
  shapes = jax.eval_shape(lambda k: model_lib.init_params(model, k), jax.random.PRNGKey(0))
  bij = shapes['bijection']
  coupling = sum(model_lib.count_params(v) for k, v in bij.items() if k.startswith('coupling'))
  counts = {'coupling': coupling, 'affine': model_lib.count_params(bij['affine']),
            'canonical': model_lib.count_params(shapes['canonical']),
            'time_net': model_lib.count_params(shapes['time_net'])}
  reference = {'coupling': 1.61e6, 'affine': 0.40e6, 'canonical': 0.81e6, 'time_net': 0.17e6}
  for name, ref in reference.items():
    assert abs(counts[name] - ref) / ref < 0.02, (name, counts[name])


def test_gamma_sampler_moments():
  for shape in (0.75, 1.5):
    g = np.asarray(gamma_sample(jax.random.PRNGKey(0), shape, (100_000,)))
    assert (g > 0).all()
    assert abs(g.mean() - shape) < 0.02 and abs(g.var() - shape) < 0.05
