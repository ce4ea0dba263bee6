"""Tests of the synthetic videos: the ground truth must be right, and the tests must notice if not.

Kept small (<= 128 px, <= 24 frames) so the file runs in a few seconds on a shared CPU.
"""

import numpy as np
import pytest

from omnimotion_jax.data import synthetic
from omnimotion_jax.data.synthetic import layers
from omnimotion_jax.data.synthetic import renderer
from omnimotion_jax.errors import UserInputError

SEED = 7
NUM_FRAMES = 16
SIZE = 96
NUM_TRACKS = 128
# One object of each path kind, so the video has crossings, exits and re-entries.
PATHS = ('drift', 'exit_return', 'cross')

# Mean absolute colour difference (8-bit levels) between a point's colour in two frames.
WARP_MEDIAN_TOL = 1.5  # resampling at different sub-pixel phases, 8-bit rounding
WARP_P90_TOL = 5.0  # points next to a soft edge blend in a little of a neighbour
# The negative control: GT shifted by this many px must be clearly worse.
SHIFT_PX = 2.0
SHIFT_MIN_RATIO = 5.0
# Ramp test: texture value = RAMP_GAIN * layer coordinate, so 8-bit rounding is 1/(2 gain) px.
RAMP_GAIN = 4.0
RAMP_TOL_PX = 0.2
# Occlusion check: rendered alphas near 0.5 may round either way.
ALPHA_MARGIN = 0.1
# OpenCV 5 is float-exact here (~1e-5); older builds resample at 1/32 px, which moves a ~1.5 px
# wide alpha ramp by up to ~0.02. A 0.2 px slip moves it by ~0.13.
ALPHA_RENDER_TOL = 0.05


@pytest.fixture(scope='module')
def sample():
  return synthetic.make_video(SEED, NUM_FRAMES, SIZE, SIZE, num_tracks=NUM_TRACKS, paths=PATHS,
                              return_layer_alphas=True)


def _bilinear_rgb(image: np.ndarray, xy: np.ndarray) -> np.ndarray:
  """Samples image [H, W, C] at xy [N, 2] (x, y) inside the pixel-centre hull -> [N, C]."""
  image = image.astype(np.float64)
  height, width = image.shape[:2]
  x, y = xy[:, 0], xy[:, 1]
  x0 = np.clip(np.floor(x).astype(int), 0, width - 2)
  y0 = np.clip(np.floor(y).astype(int), 0, height - 2)
  fx, fy = (x - x0)[:, None], (y - y0)[:, None]
  return (image[y0, x0] * (1 - fx) * (1 - fy) + image[y0, x0 + 1] * fx * (1 - fy)
          + image[y0 + 1, x0] * (1 - fx) * fy + image[y0 + 1, x0 + 1] * fx * fy)


def _pair_errors(sample: dict, shift: np.ndarray) -> np.ndarray:
  """Colour error at the GT of every visible point in every ordered frame pair, [M]."""
  video, points, occluded = sample['video'], sample['target_points'], sample['occluded']
  height, width = video.shape[1:3]
  errors = []
  for t in range(len(video)):
    for t2 in range(len(video)):
      both = ~occluded[:, t] & ~occluded[:, t2]
      if t == t2 or not both.any():
        continue
      moved = np.clip(points[both, t2] + shift, 0, [width - 1, height - 1])
      diff = _bilinear_rgb(video[t], points[both, t]) - _bilinear_rgb(video[t2], moved)
      errors.append(np.abs(diff).mean(-1))
  return np.concatenate(errors)


def test_colour_is_constant_along_tracks(sample):
  errors = _pair_errors(sample, np.zeros(2))
  assert len(errors) > 10_000  # many points and frame pairs
  assert np.median(errors) < WARP_MEDIAN_TOL
  assert np.percentile(errors, 90) < WARP_P90_TOL
  # Negative control: the same check on wrong tracks fails clearly.
  shifted = _pair_errors(sample, np.array([SHIFT_PX, -SHIFT_PX]))
  assert np.median(shifted) > SHIFT_MIN_RATIO * np.median(errors)
  assert np.median(shifted) > WARP_MEDIAN_TOL * 2


def test_forward_affine_is_where_the_colour_lands():
  """Absolute convention check (pixel centres): render a layer whose colour is its coordinate."""
  size = 60
  ys, xs = np.mgrid[:size, :size].astype(np.float32)
  texture = np.stack([xs, ys, np.zeros_like(xs)], -1) * RAMP_GAIN
  angle, scale, offset = 0.3, 1.2, np.array([30.25, 20.7])
  linear = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
  affine = np.concatenate([linear, offset[:, None]], 1)
  layer = layers.Layer(texture, np.ones((size, size), np.float32), np.repeat(affine[None], 2, 0))
  video, _, alphas = renderer._render([layer], 2, SIZE, SIZE, keep_alphas=True)
  qy, qx = np.mgrid[:SIZE, :SIZE]
  q = np.stack([qx, qy], -1).reshape(-1, 2).astype(np.float64)
  expected = (q - offset) @ np.linalg.inv(linear).T  # layer px of each frame pixel
  inner = np.all((expected >= 1) & (expected <= size - 2), -1)  # away from the layer's edge
  assert inner.sum() > 1000
  got = video[0].reshape(-1, 3)[inner, :2] / RAMP_GAIN
  assert np.abs(got - expected[inner]).max() < RAMP_TOL_PX
  assert np.all(alphas[0, 0].reshape(-1)[inner] > 0.999)
  # The same check sees a half-pixel convention slip.
  assert np.abs(got - (expected[inner] + 0.5)).max() > RAMP_TOL_PX


def test_exact_alpha_matches_rendered_alpha():
  """The occlusion GT samples alphas analytically; they must match what the renderer draws."""
  rng = np.random.default_rng(0)
  for _ in range(4):  # ellipses and polygons
    alpha = layers._object_alpha(rng, 40, 50)
    angle, scale, offset = rng.uniform(-3, 3), rng.uniform(0.7, 1.5), rng.uniform(20, 60, 2)
    linear = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    affine = np.concatenate([linear, offset[:, None]], 1)
    layer = layers.Layer(np.zeros((40, 50, 3), np.float32), alpha, affine[None])
    _, _, rendered = renderer._render([layer], 1, SIZE, SIZE, keep_alphas=True)
    qy, qx = np.mgrid[:SIZE, :SIZE]
    q = np.stack([qx, qy], -1).astype(np.float64)
    exact = renderer._alpha_at(alpha, (q - offset) @ np.linalg.inv(linear).T)
    assert np.abs(rendered[0, 0] - exact).max() < ALPHA_RENDER_TOL
    assert ((exact > 0.05) & (exact < 0.95)).sum() > 20  # the soft edge is in view


def _sample_alpha(alpha: np.ndarray, xy: np.ndarray) -> np.ndarray:
  """Bilinear sample of a rendered alpha [H, W] at xy [N, 2] inside the frame -> [N]."""
  return _bilinear_rgb(alpha[..., None], xy)[:, 0]


def test_occlusion_agrees_with_layer_order(sample):
  points, occluded = sample['target_points'], sample['occluded']
  layer_id, layer_alphas = sample['layer_id'], sample['layer_alphas']
  num_frames, height, width = layer_alphas.shape[1:]
  x, y = points[..., 0], points[..., 1]
  in_frame = (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)
  assert (layer_alphas[0] > 0.999).all()  # the background canvas covers every frame
  # Points outside the frame are occluded; and the video does have some.
  assert occluded[~in_frame].all()
  assert (~in_frame).sum() > 50
  # Inside the frame: occluded iff a layer in front has alpha > 0.5 there. The GT uses exact
  # alphas, the rendered ones are resampled, so leave out a band of +-ALPHA_MARGIN around 0.5.
  front = np.zeros(x.shape)
  own = np.zeros(x.shape)
  for t in range(num_frames):
    xy = np.clip(points[:, t], 0, [width - 1, height - 1]).astype(np.float64)
    for layer in range(layer_alphas.shape[0]):
      alpha = _sample_alpha(layer_alphas[layer, t], xy)
      front[:, t] = np.where(layer_id < layer, np.maximum(front[:, t], alpha), front[:, t])
      own[:, t] = np.where(layer_id == layer, alpha, own[:, t])
  covered = in_frame & (front > 0.5 + ALPHA_MARGIN)
  clear = in_frame & (front < 0.5 - ALPHA_MARGIN)
  assert occluded[covered].all()
  assert not occluded[clear].any()
  assert (in_frame & ~covered & ~clear).mean() < 0.01  # the left-out band is thin
  # Both cases occur: objects occlude the background and each other, some only partly.
  assert covered.sum() > 50
  assert (covered & (layer_id > 0)[:, None]).any()
  assert ((front > 0.6) & (front < 0.9) & in_frame).any()
  # The own layer is solid at its visible points.
  assert own[~occluded].min() > 0.5 + ALPHA_MARGIN
  # The foreground mask is the union of the object layers.
  union = 1 - np.prod(1 - layer_alphas[1:], axis=0)
  decided = np.abs(union - 0.5) > 1e-4  # float32 products in another order may differ slightly
  np.testing.assert_array_equal(sample['masks'][decided], (union > 0.5)[decided])


def test_tracks_leave_and_reenter(sample):
  points = sample['target_points']
  x, y = points[..., 0], points[..., 1]
  in_frame = (x >= 0) & (x <= SIZE - 1) & (y >= 0) & (y <= SIZE - 1)
  # Some object track is in view, then out of view, then in view again.
  first = np.argmax(in_frame, 1)
  last = NUM_FRAMES - 1 - np.argmax(in_frame[:, ::-1], 1)
  gaps = [(~in_frame[n, first[n]:last[n] + 1]).any() for n in range(len(points))]
  assert np.any(np.array(gaps) & (sample['layer_id'] > 0))
  # Every track is visible at least once, and every layer has tracks.
  assert (~sample['occluded']).any(1).all()
  assert set(sample['layer_id'].tolist()) == set(range(len(PATHS) + 1))


def test_tracks_follow_the_layer_affines(sample):
  affines = sample['affines'][sample['layer_id']]  # [N, T, 2, 3]
  local = sample['layer_points'][:, None]
  expected = np.einsum('ntij,ntj->nti', affines[..., :2], np.broadcast_to(
      local, affines.shape[:2] + (2,))) + affines[..., 2]
  np.testing.assert_allclose(sample['target_points'], expected, atol=1e-3)


def test_determinism():
  kwargs = dict(num_frames=6, height=64, width=64, num_tracks=32)
  first = synthetic.make_video(3, **kwargs)
  second = synthetic.make_video(3, **kwargs)
  assert first.keys() == second.keys()
  for key in first:
    np.testing.assert_array_equal(first[key], second[key], err_msg=key)
  other = synthetic.make_video(4, **kwargs)
  assert not np.array_equal(first['video'], other['video'])
  assert not np.array_equal(first['target_points'], other['target_points'])


def test_query_sampling_rules(sample):
  points, occluded = sample['target_points'], sample['occluded']
  expected_first = []
  for n in range(len(points)):
    visible = np.nonzero(~occluded[n])[0]
    if len(visible):
      t = visible[0]
      expected_first.append((t, points[n, t, 1], points[n, t, 0]))
  np.testing.assert_array_equal(sample['query_points_first'],
                                np.array(expected_first, np.float32))
  expected_strided, groups = [], []
  for t in range(0, NUM_FRAMES, synthetic.QUERY_STRIDE):
    for n in range(len(points)):
      if not occluded[n, t]:
        expected_strided.append((t, points[n, t, 1], points[n, t, 0]))
        groups.append(n)
  np.testing.assert_array_equal(sample['query_points_strided'],
                                np.array(expected_strided, np.float32))
  np.testing.assert_array_equal(sample['trackgroup_strided'], groups)
  # Queries are visible points of their tracks.
  t = sample['query_points_strided'][:, 0].astype(int)
  assert not occluded[sample['trackgroup_strided'], t].any()


def test_suite_specs_and_shapes():
  v1, mini = synthetic.SUITES['synthetic-v1'], synthetic.SUITES['synthetic-mini']
  assert len(v1) == 8 and len(mini) == 4
  for spec in v1:
    assert 24 <= spec.num_frames <= 48
    assert 128 <= spec.height <= 256 and 128 <= spec.width <= 256
  for spec in mini:
    assert spec.num_frames == 24 and 96 <= min(spec.height, spec.width)
    assert max(spec.height, spec.width) <= 128
  assert len({spec.seed for spec in v1 + mini}) == len(v1) + len(mini)
  spec = mini[0]
  video = synthetic.suite_video('synthetic-mini', 0)
  num_tracks = len(video['layer_id'])
  assert video['name'] == spec.name
  assert video['video'].shape == (spec.num_frames, spec.height, spec.width, 3)
  assert video['video'].dtype == np.uint8
  assert num_tracks == spec.num_tracks
  assert video['target_points'].shape == (num_tracks, spec.num_frames, 2)
  assert video['target_points'].dtype == np.float32
  assert video['occluded'].shape == (num_tracks, spec.num_frames)
  assert video['occluded'].dtype == bool
  assert video['query_points_first'].shape == (num_tracks, 3)
  assert video['query_points_strided'].shape == (len(video['trackgroup_strided']), 3)
  assert video['masks'].shape == (spec.num_frames, spec.height, spec.width)
  assert video['affines'].shape == (spec.num_layers + 1, spec.num_frames, 2, 3)


def test_npz_round_trip_and_command(tmp_path):
  out = tmp_path / 'sub' / 'video.npz'
  result = synthetic.synth_command(5, out, frames=4, height=48, width=64, preview=True)
  assert result['npz'] == out and result['preview'].stat().st_size > 0
  assert sorted(p.name for p in out.parent.iterdir()) == ['video.mp4', 'video.npz']  # no temps
  loaded = synthetic.load_video_npz(out)
  expected = synthetic.make_video(5, 4, 48, 64)
  assert loaded.keys() == expected.keys()
  for key in expected:
    np.testing.assert_array_equal(loaded[key], expected[key], err_msg=key)
  assert isinstance(loaded['seed'], int)


@pytest.mark.parametrize('kwargs', [
    dict(num_frames=1),
    dict(height=16),
    dict(width=100_000),
    dict(num_layers=-1),
    dict(num_tracks=0),
    dict(paths=('drift', 'teleport')),
    dict(num_layers=2, paths=('drift',)),
    dict(motion_scale=float('nan')),
])
def test_bad_arguments(kwargs):
  with pytest.raises(UserInputError):
    synthetic.make_video(0, **kwargs)


def test_bad_suite_and_paths(tmp_path):
  with pytest.raises(UserInputError, match='unknown synthetic suite'):
    synthetic.suite_video('nope', 0)
  with pytest.raises(UserInputError, match='0..7'):
    synthetic.suite_video('synthetic-v1', 8)
  with pytest.raises(UserInputError, match='.npz'):
    synthetic.synth_command(0, tmp_path / 'video.mp4')
  with pytest.raises(UserInputError, match='does not exist'):
    synthetic.load_video_npz(tmp_path / 'missing.npz')
