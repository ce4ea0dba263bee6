"""The surface model: monotone maps, grid-conditioned couplings, depth surface, mapping and losses."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from omnimotion_jax import track
from omnimotion_jax.config import load_config
from omnimotion_jax.model import grid_coupling
from omnimotion_jax.model import model as model_lib
from omnimotion_jax.model import monotone
from omnimotion_jax.model import render
from omnimotion_jax.model import surface
from omnimotion_jax.train import sampler
from omnimotion_jax.train import surface_losses

VIDEO = render.VideoShape(num_frames=6, height=24, width=32)


def _config():
  return load_config('cpu_tiny', ['model.kind=surface', 'model.surface.plane_sizes=(6,16)',
                                  'model.surface.time_line_sizes=(3,6)',
                                  'model.surface.depth_grid=(6,8,8)'])


@pytest.fixture(scope='module')
def model():
  return model_lib.build(model_lib.model_config(_config().model))


def _perturbed(params, scale, seed=1):
  """Parameters moved away from the identity start: every leaf plus scale * N(0, 1)."""
  rng = np.random.default_rng(seed)
  noise = lambda x: np.float32(scale) * rng.standard_normal(x.shape, np.float32)
  return jax.tree_util.tree_map(lambda x: jnp.asarray(np.asarray(x) + noise(x)), params)


def test_monotone_map_is_increasing_exactly_invertible_and_identity_outside():
  rng = np.random.default_rng(0)
  logits_in, logits_out = (jnp.asarray(rng.normal(size=(500, 5)) * 2, jnp.float32)
                           for _ in range(2))
  k_in = monotone.knots_from_logits(logits_in, 1.5, 0.05)
  k_out = monotone.knots_from_logits(logits_out, 1.5, 0.05)
  np.testing.assert_array_equal(k_in[:, 0], -1.5)
  np.testing.assert_array_equal(k_in[:, -1], 1.5)
  x = jnp.asarray(rng.uniform(-2, 2, 500), jnp.float32)
  y = monotone.interpolate(x, k_in, k_out)
  np.testing.assert_allclose(monotone.interpolate(y, k_out, k_in), x, atol=2e-6)
  outside = np.abs(np.asarray(x)) > 1.5
  np.testing.assert_array_equal(np.asarray(y)[outside], np.asarray(x)[outside])
  # Increasing: a finer x on one row's knots gives a non-decreasing y.
  row = lambda k: jnp.broadcast_to(k[:1], (1000, 6))
  grid = jnp.linspace(-2, 2, 1000)
  assert np.all(np.diff(np.asarray(monotone.interpolate(grid, row(k_in), row(k_out)))) >= 0)
  # Equal logits make equal knots: the identity.
  same = monotone.knots_from_logits(jnp.zeros((1, 5)), 1.5, 0.05)
  np.testing.assert_allclose(monotone.interpolate(x[:1], same, same), x[:1], atol=1e-7)


def test_gather_rows_gradient_equals_plain_autodiff():
  rng = np.random.default_rng(1)
  table = jnp.asarray(rng.normal(size=(20, 3)), jnp.float32)
  index = jnp.asarray(rng.integers(0, 20, (7, 4)))
  weights = jnp.asarray(rng.uniform(size=(7, 4)), jnp.float32)
  probe = jnp.asarray(rng.normal(size=(7, 3)), jnp.float32)
  custom = lambda t, w: jnp.sum(grid_coupling.gather_rows(t, index, w) * probe)
  plain = lambda t, w: jnp.sum(jnp.einsum('nk,nkc->nc', w, t[index]) * probe)
  for a, b in zip(jax.grad(custom, (0, 1))(table, weights), jax.grad(plain, (0, 1))(table, weights)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_bijection_round_trip_below_1e5_after_moving_points(model):
  params = _perturbed(model_lib.init_params(model, jax.random.PRNGKey(0)), 0.1)
  rng = np.random.default_rng(2)
  x = jnp.asarray(np.c_[rng.uniform(-1, 1, (4000, 2)), rng.uniform(0, 2, 4000)], jnp.float32)
  t = jnp.asarray(rng.uniform(0, 1, (4000, 1)), jnp.float32)
  apply = lambda method, p: model.apply({'params': params}, p, t, method=method)
  y, back = jax.jit(lambda x: (lambda y: (y, apply(surface.SurfaceModel.to_local, y)))(
      apply(surface.SurfaceModel.to_canonical, x)))(x)
  assert float(jnp.max(jnp.abs(y - x + jnp.array([0.0, 0.0, 1.0])))) > 0.1  # It does move them.
  assert float(jnp.max(jnp.abs(back - x))) < 1e-5


def test_at_init_every_pixel_maps_to_itself_on_a_flat_surface(model):
  params = model_lib.init_params(model, jax.random.PRNGKey(0))
  rng = np.random.default_rng(3)
  px = jnp.asarray(rng.uniform(0, [VIDEO.width - 1, VIDEO.height - 1], (50, 2)), jnp.float32)
  src, tgt = (jnp.asarray(rng.integers(0, VIDEO.num_frames, 50)) for _ in range(2))
  out = jax.jit(lambda p: surface.map_pixels(model, p, px, src, tgt, VIDEO))(params)
  np.testing.assert_allclose(out['px'], px, atol=1e-4)
  np.testing.assert_allclose(out['depth'], 1.0, atol=1e-6)
  np.testing.assert_allclose(out['surface_depth'], 1.0, atol=1e-6)
  mapper = render.make_mapper(model, VIDEO, render.occlusion_margin(model, 1.1))
  assert not np.any(np.asarray(mapper(params, px, src, tgt)[2]))


def test_depth_test_occludes_points_behind_the_surface():
  depth = jnp.array([0.5, 1.0, 1.2, 1.5])
  np.testing.assert_array_equal(surface.occlusion_from_depth(depth, jnp.full(4, 1.0), 0.3),
                                [0, 0, 0, 1])


def test_losses_are_finite_and_layering_pushes_occluded_points_behind(model):
  config = _config()
  params = model_lib.init_params(model, jax.random.PRNGKey(0))
  b, r = 2, 8
  rng = np.random.default_rng(4)
  px = jnp.asarray(rng.uniform(0, 20, (b, r, 2)), jnp.float32)
  batch = sampler.Batch(
      src=jnp.array([1, 2]), tgt=jnp.array([2, 4]), px_src=px, px_tgt=px + 1.0,
      rgb_src=jnp.zeros((b, r, 3)), weights=jnp.ones((b, r)), max_gap=jnp.array(5),
      covisible=jnp.ones((b, r), bool), occluded_tgt=jnp.zeros((b, r), bool).at[1].set(True))
  cfg = surface_losses.SurfaceLossConfig(**config.train.surface_loss)

  @jax.jit
  def terms_and_grads(p):
    terms = surface_losses.compute_losses(model, p, batch, VIDEO, cfg)
    grads = jax.grad(lambda p: surface_losses.compute_losses(model, p, batch, VIDEO, cfg)[
        'layering'])(p)
    return terms, grads

  terms, grads = terms_and_grads(params)
  assert all(np.isfinite(float(v)) for v in terms.values())
  # On a flat surface an occluded point lies on its occluder: layering wants it pushed back.
  np.testing.assert_allclose(terms['layering'], cfg.layering_margin, rtol=1e-5)
  assert all(np.all(np.isfinite(g)) for g in jax.tree_util.tree_leaves(grads))
  assert float(jnp.max(jnp.abs(grads['depth']['grid']))) > 0


def test_robust_flow_loss_softens_only_long_gap_errors(model):
  """Hand-worked: at the identity start every point is 6 px off its target; the adjacent pair
  keeps its L1 of 6, the gap-2 pair costs c * log(1 + 6 / c) = 2 log 4 with c = 2 px."""
  config = _config()
  params = model_lib.init_params(model, jax.random.PRNGKey(0))
  b, r = 2, 8
  px = jnp.asarray(np.random.default_rng(7).uniform(4, 16, (b, r, 2)), jnp.float32)
  batch = sampler.Batch(
      src=jnp.array([1, 2]), tgt=jnp.array([2, 4]), px_src=px, px_tgt=px + 6.0,
      rgb_src=jnp.zeros((b, r, 3)), weights=jnp.ones((b, r)), max_gap=jnp.array(5),
      covisible=jnp.ones((b, r), bool), occluded_tgt=jnp.zeros((b, r), bool))
  flow = lambda **kw: float(surface_losses.compute_losses(
      model, params, batch, VIDEO, surface_losses.SurfaceLossConfig(
          **{**config.train.surface_loss.to_dict(), **kw}))['flow'])
  np.testing.assert_allclose(flow(flow_robust_px=0.0), 6.0, rtol=1e-5)
  np.testing.assert_allclose(flow(flow_robust_px=2.0), (6.0 + 2.0 * np.log(4.0)) / 2, rtol=1e-5)
  np.testing.assert_allclose(flow(flow_robust_px=2.0, flow_robust_min_gap=3), 6.0, rtol=1e-5)
  # The gradient of c log(1 + e / c) is 1 / (1 + e / c): a third of L1's at e = 2c.
  grad = jax.grad(lambda e: surface_losses.robust_flow_errors(e, 2.0))(4.0)
  np.testing.assert_allclose(grad, 1.0 / 3.0, rtol=1e-6)


def test_surface_mapper_compiles_once_for_any_query_count(model):
  params = _perturbed(model_lib.init_params(model, jax.random.PRNGKey(0)), 0.05)
  mapper = render.make_mapper(model, VIDEO, render.occlusion_margin(model, 1.1))
  rng = np.random.default_rng(5)
  for count in (1, 100, 3000):
    queries = np.stack([rng.integers(0, VIDEO.num_frames, count),
                        rng.uniform(0, VIDEO.height - 1, count),
                        rng.uniform(0, VIDEO.width - 1, count)], -1)
    tracks, occluded = track.track_queries(mapper, params, queries, VIDEO, chunk_size=2048,
                                           occlusion_threshold=0.99, cycle_threshold=3.0)
    assert tracks.shape == (count, VIDEO.num_frames, 2) and occluded.shape == tracks.shape[:2]
  assert mapper._cache_size() == 1  # pylint: disable=protected-access
  depth_fn = track.make_depth_fn(model, VIDEO)
  maps = track.depth_maps(depth_fn, params, VIDEO, [0, 3], chunk_size=512)
  assert maps.shape == (2, VIDEO.height, VIDEO.width) and np.all(np.isfinite(maps))
