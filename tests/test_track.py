"""Tracking: output shapes and (t, y, x) -> (x, y) conventions, independence from other queries,
out-of-frame and forward-backward occlusion, chunking."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from omnimotion_jax.model import render
from omnimotion_jax import track
from omnimotion_jax.model import model as model_lib
from omnimotion_jax.config import load_config

VIDEO = render.VideoShape(num_frames=6, height=24, width=32)
VELOCITY = np.array([3.0, -1.0], np.float32)  # px per frame, (x, y)


def _translating_mapper(clamp: bool):
  """A stand-in for make_mapper's output: every point moves by VELOCITY per frame.

  With clamp=True, predictions are clamped into the frame (like a model that maps points which
  left the view onto content inside it), which breaks forward-backward consistency there.
  """

  @jax.jit
  def mapper(params, px, src, tgt):
    del params
    out = px + (tgt - src)[:, None].astype(jnp.float32) * VELOCITY
    if clamp:
      out = jnp.clip(out, 0.0, jnp.array([VIDEO.width - 1.0, VIDEO.height - 1.0]))
    return out, jnp.zeros(px.shape[0]), jnp.zeros(px.shape[0])

  return mapper


@pytest.fixture(scope='module')
def tiny_model():
  config = load_config('cpu_tiny')
  model = model_lib.OmniMotion(model_lib.model_config(config.model))
  params = model_lib.init_params(model, jax.random.PRNGKey(0))
  margin = render.occlusion_margin(model, config.track.occlusion_eps_factor)
  return render.make_mapper(model, VIDEO, margin), params


def test_shapes_and_coordinate_conventions():
  queries = np.array([[2, 5.0, 7.0], [0, 10.0, 1.5], [5, 0.0, 31.0]], np.float32)  # (t, y, x)
  tracks, occluded = track.track_queries(_translating_mapper(False), None, queries, VIDEO,
                                         chunk_size=4, occlusion_threshold=0.99)
  assert tracks.shape == (3, VIDEO.num_frames, 2) and tracks.dtype == np.float32
  assert occluded.shape == (3, VIDEO.num_frames) and occluded.dtype == bool
  frames = np.arange(VIDEO.num_frames, dtype=np.float32)
  expected = queries[:, None, [2, 1]] + (frames[None, :, None] - queries[:, None, :1]) * VELOCITY
  np.testing.assert_allclose(tracks, expected, atol=1e-5)
  for n, (t, y, x) in enumerate(queries):
    np.testing.assert_array_equal(tracks[n, int(t)], [x, y])  # the query itself, as (x, y)
    assert not occluded[n, int(t)]
  # Outside [0, W-1] x [0, H-1] means occluded, inside means visible (score 0 here).
  inside = ((expected[..., 0] >= 0) & (expected[..., 0] <= VIDEO.width - 1)
            & (expected[..., 1] >= 0) & (expected[..., 1] <= VIDEO.height - 1))
  np.testing.assert_array_equal(occluded, ~inside)


def test_forward_backward_check_flags_points_mapped_onto_other_content():
  queries = np.array([[0, 12.0, 2.0], [0, 12.0, 25.0]], np.float32)  # the 2nd leaves at frame 3
  kw = dict(chunk_size=8, occlusion_threshold=0.99)
  mapper = _translating_mapper(clamp=True)
  tracks, occluded = track.track_queries(mapper, None, queries, VIDEO, **kw)
  assert not occluded[1].any()  # clamped inside the frame: the depth test cannot tell
  _, checked = track.track_queries(mapper, None, queries, VIDEO, cycle_threshold=1.0, **kw)
  left_view = 25.0 + np.arange(VIDEO.num_frames) * VELOCITY[0] > VIDEO.width - 1
  np.testing.assert_array_equal(checked[1], left_view)
  np.testing.assert_array_equal(checked[0], occluded[0])  # consistent points are unaffected
  assert not checked[0].any()


def test_forward_backward_threshold_grows_with_distance():
  # The 2nd point leaves the view at frame 3 and is clamped to x = 31, so mapping it back from
  # frame t misses by (25 + 3t) - 31 = 3t - 6 px; the threshold is 1 + 1 * t px.
  queries = np.array([[0, 12.0, 2.0], [0, 12.0, 25.0]], np.float32)
  _, occluded = track.track_queries(_translating_mapper(clamp=True), None, queries, VIDEO,
                                    chunk_size=8, occlusion_threshold=0.99,
                                    cycle_threshold=1.0, cycle_threshold_per_frame=1.0)
  np.testing.assert_array_equal(occluded[1], [False, False, False, False, True, True])
  assert not occluded[0].any()


def test_tracks_do_not_depend_on_other_queries_or_chunking(tiny_model):
  mapper, params = tiny_model
  rng = np.random.default_rng(0)
  queries = np.stack([rng.integers(0, VIDEO.num_frames, 9), rng.uniform(0, 23, 9),
                      rng.uniform(0, 31, 9)], -1).astype(np.float32)
  kw = dict(occlusion_threshold=0.5)
  tracks, occluded = track.track_queries(mapper, params, queries, VIDEO, chunk_size=16, **kw)
  for chunk_size in (7, 64):  # different padding and chunk boundaries
    t2, o2 = track.track_queries(mapper, params, queries[::-1], VIDEO, chunk_size=chunk_size, **kw)
    np.testing.assert_allclose(t2[::-1], tracks, atol=1e-4)
    np.testing.assert_array_equal(o2[::-1], occluded)
  alone, alone_occ = track.track_queries(mapper, params, queries[4:5], VIDEO, chunk_size=16, **kw)
  np.testing.assert_allclose(alone[0], tracks[4], atol=1e-4)
  np.testing.assert_array_equal(alone_occ[0], occluded[4])


def test_grid_queries_are_centred_tyx():
  grid = track.grid_queries(VIDEO, step=10, frame=3)
  assert grid.shape[1] == 3 and (grid[:, 0] == 3).all()
  ys, xs = np.unique(grid[:, 1]), np.unique(grid[:, 2])
  np.testing.assert_array_equal(ys, [1, 11, 21])  # (24 - 1) % 10 // 2 = 1
  np.testing.assert_array_equal(xs, [0, 10, 20, 30])


def test_strided_depth_maps_are_the_full_maps_subsampled():
  """Depth at stride s is the full-resolution map's [::s, ::s] (x = column, y = row)."""
  config = load_config('cpu_tiny')
  model = model_lib.OmniMotion(model_lib.model_config(config.model))
  params = model_lib.init_params(model, jax.random.PRNGKey(0))
  depth_fn = track.make_depth_fn(model, VIDEO)
  full = track.depth_maps(depth_fn, params, VIDEO, [0, 5], chunk_size=256)
  strided = track.depth_maps(depth_fn, params, VIDEO, [0, 5], chunk_size=100, stride=3)
  assert full.shape == (2, VIDEO.height, VIDEO.width)
  assert strided.shape == (2, 8, 11)  # ceil(24 / 3), ceil(32 / 3)
  np.testing.assert_allclose(strided, full[:, ::3, ::3], atol=1e-5)
  assert np.ptp(full) > 0  # the maps are not constant, so the (x, y) order is checked


def test_upsampled_strided_maps_are_exact_on_planes():
  # A plane is reproduced exactly by bilinear interpolation up to the last sample.
  yy, xx = np.mgrid[0:VIDEO.height, 0:VIDEO.width].astype(np.float32)
  plane = (0.5 + 0.01 * xx - 0.02 * yy)[None]
  up = track.upsample_strided(plane[:, ::3, ::3], 3, VIDEO.height, VIDEO.width)
  assert up.shape == plane.shape
  last_y, last_x = (VIDEO.height - 1) // 3 * 3, (VIDEO.width - 1) // 3 * 3
  np.testing.assert_allclose(up[:, :last_y + 1, :last_x + 1], plane[:, :last_y + 1, :last_x + 1],
                             atol=1e-6)
  np.testing.assert_array_equal(up[:, ::3, ::3], plane[:, ::3, ::3])
  np.testing.assert_array_equal(track.upsample_strided(plane, 1, VIDEO.height, VIDEO.width), plane)


def test_track_queries_compiles_the_mapper_once_for_any_query_count():
  # The production mapper (make_mapper's jit) on fixed-size chunks: 1, 100 and 10,000 queries,
  # forward and cycle-check mappings, all reuse one executable.
  config = load_config('cpu_tiny')
  model = model_lib.OmniMotion(model_lib.model_config(config.model))
  params = model_lib.init_params(model, jax.random.PRNGKey(0))
  video = render.VideoShape(num_frames=2, height=24, width=32)  # 2 frames: a cheap 10k case.
  mapper = render.make_mapper(model, video, render.occlusion_margin(model, 1.1))
  rng = np.random.default_rng(0)
  for count in (1, 100, 10_000):
    queries = np.stack([rng.integers(0, video.num_frames, count),
                        rng.uniform(0, video.height - 1, count),
                        rng.uniform(0, video.width - 1, count)], -1)
    tracks, _ = track.track_queries(mapper, params, queries, video, chunk_size=4096,
                                    occlusion_threshold=0.99, cycle_threshold=3.0)
    assert tracks.shape == (count, video.num_frames, 2)
  assert mapper._cache_size() == 1  # pylint: disable=protected-access
