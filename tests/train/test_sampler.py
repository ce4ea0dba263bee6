"""The sampler's appearance check (sampler.patch_zncc, SamplerConfig.appearance_min_zncc): a
long-gap correspondence whose two ends look unlike is dropped; right ones, adjacent pairs and
padding are untouched."""

import dataclasses

import jax
import numpy as np

from omnimotion_jax.config import load_config
from omnimotion_jax.train import batch
from omnimotion_jax.train import sampler

N, H, W = 4, 40, 48
SHIFT = 3  # px per frame, to the right.
WRONG = (0, 2)  # This pair's stored flow points 11 px too far down.


def _textured_video():
  """Frames of one smooth random texture moving SHIFT px right per frame, with exact flows."""
  rng = np.random.default_rng(0)
  texture = rng.random((H + 8, W + 4 * SHIFT + 8, 3))
  kernel = np.ones(3) / 3  # A little smoothing: bilinear samples stay close to the pixels.
  for axis in (0, 1):
    texture = np.apply_along_axis(lambda v: np.convolve(v, kernel, 'same'), axis, texture)
  frames = np.stack([texture[4:4 + H, 4 + 4 * SHIFT - SHIFT * t:][:, :W] for t in range(N)])
  pairs = np.array([(i, j) for i in range(N) for j in range(N) if i != j], np.int32)
  flows = np.zeros((len(pairs), H, W, 2), np.float16)
  flows[..., 0] = (pairs[:, 1] - pairs[:, 0])[:, None, None] * SHIFT
  wrong = int(np.nonzero((pairs == WRONG).all(1))[0][0])
  flows[wrong, ..., 1] = 11
  x, y = np.meshgrid(np.arange(W), np.arange(H))
  inside = ((x + flows[..., 0] <= W - 1) & (y + flows[..., 1] <= H - 1)
            & (x + flows[..., 0] >= 0))  # As a forward-backward check would: targets in frame.
  return sampler.TrainData(
      frames=frames.astype(np.float32), pairs=pairs, flows=flows, cycle=inside, occluded=np.zeros((len(pairs), H, W), bool),
      counts=np.full((N, H, W), len(pairs) / N, np.float32),
      pair_counts=np.full(len(pairs), H * W, np.float32),
      adjacent_pair=sampler.adjacent_pair_index(pairs, N), size=np.array([N, H, W], np.int32))


def _cfg(threshold):
  cfg = sampler.SamplerConfig(**load_config('cpu_tiny').train.sampling)
  return dataclasses.replace(cfg, num_pairs=64, num_points=64, max_gap_start=N, swap_prob=0.0,
                             hard_mining_fraction=0.0, appearance_min_zncc=threshold)


def _sample(data, threshold, seed=0):
  n, h, w = data.frames.shape[:3]
  return jax.jit(sampler.sample_batch, static_argnums=3)(
      jax.random.PRNGKey(seed), data, np.int32(0), _cfg(threshold),
      np.zeros((n, h, w), np.float32), np.ones(n, np.float32), np.bool_(False))


def test_patch_zncc_is_one_for_the_same_patch_minus_one_for_its_negative_and_ignores_padding():
  data = _textured_video()
  px = np.array([[10.0, 12.0], [0.0, 0.0], [47.0, 39.0], [20.5, 7.25]], np.float32)
  size = np.array([H, W], np.int32)
  zncc = lambda a, pa, b, pb: np.asarray(sampler.patch_zncc(np.stack([a, b]), 0, pa, 1, pb, size,
                                                             5, 2.0))
  frame = data.frames[0]
  np.testing.assert_allclose(zncc(frame, px, frame, px), 1.0, atol=1e-4)
  np.testing.assert_allclose(zncc(frame, px, 1.0 - frame, px), -1.0, atol=1e-4)
  moved = px + np.float32([SHIFT, 0])  # The same points in frame 1.
  inner = np.array([True, False, False, True])  # Whole patches inside both frames (no clamping).
  assert (zncc(frame, px, data.frames[1], moved)[inner] > 0.99).all()
  assert (zncc(frame, px, data.frames[1], px + np.float32([0, 11]))[inner] < 0.5).all()
  # Padding is never read: taps are clamped to the video's own size.
  padded = np.pad(frame, ((0, 5), (0, 7), (0, 0)), constant_values=0.9)
  np.testing.assert_allclose(zncc(padded, px, padded, px[::-1]), zncc(frame, px, frame, px[::-1]),
                             atol=1e-6)


def test_the_check_drops_the_wrong_long_gap_pair_and_keeps_the_rest():
  data = _textured_video()
  off, on = _sample(data, None), _sample(data, 0.5)
  # The same draws either way: only weights and the co-visible flags change.
  for name in ('src', 'tgt', 'px_src', 'px_tgt'):
    np.testing.assert_array_equal(getattr(off, name), getattr(on, name))
  src, tgt = np.asarray(on.src), np.asarray(on.tgt)
  wrong = (src == WRONG[0]) & (tgt == WRONG[1])
  assert wrong.any() and (np.abs(src - tgt) == 1).any() and (np.abs(src - tgt) >= 2).any()
  w_off, w_on = np.asarray(off.weights), np.asarray(on.weights)
  assert (w_on[wrong] == 0).mean() > 0.9  # Edge points see the texture's border: nearly all.
  assert not np.asarray(on.covisible)[wrong & (w_on == 0)].any()
  # Right correspondences keep their weight (a few at the right edge clamp their patch).
  right = ~wrong[:, None] & np.ones_like(w_on, bool)
  assert (w_on[right] == w_off[right]).mean() > 0.97
  adjacent = np.abs(src - tgt) == 1
  np.testing.assert_array_equal(w_on[adjacent], w_off[adjacent])


def test_a_padded_video_is_checked_as_the_unpadded_one():
  data = _textured_video()
  padded = batch.pad_data(data, (N + 1, H + 6, W + 4, len(data.pairs) + 3))
  a, b = _sample(data, 0.5, seed=3), _sample(padded, 0.5, seed=3)
  np.testing.assert_array_equal(a.src, b.src)
  np.testing.assert_allclose(a.weights, b.weights, atol=1e-6)
