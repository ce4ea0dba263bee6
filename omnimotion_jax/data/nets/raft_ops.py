"""RAFT's parameter-free operations on one pair (raft.py): the coordinate grid, the all-pairs
correlation pyramid and its lookup, and the convex and bilinear x8 upsampling of flows.

Conventions as raft.py: channel-last arrays, (x, y) pixel coordinates with centres at integers,
features and low-res flows at 1/8 resolution [h, w, C], flows (dx, dy) px.
"""

import jax
import jax.numpy as jnp
import numpy as np

UPSAMPLE = 8  # Features are at 1/8 resolution.
HIGHEST = jax.lax.Precision.HIGHEST


def coords_grid(height: int, width: int) -> jax.Array:
  """[h, w, 2] (x, y) pixel coordinates of a grid (official utils.coords_grid)."""
  ys, xs = jnp.meshgrid(jnp.arange(height, dtype=jnp.float32),
                        jnp.arange(width, dtype=jnp.float32), indexing='ij')
  return jnp.stack([xs, ys], -1)


def corr_pyramid(fmap1: jax.Array, fmap2: jax.Array, levels: int) -> list[jax.Array]:
  """All-pairs correlation pyramid (official CorrBlock.__init__).

  Level 0 is <fmap1(p), fmap2(q)> / sqrt(C) for every p, q: [h w, h, w] (row p = y w + x of
  image 1, then image 2's grid); level l is level l-1 average-pooled 2x2 over image 2's axes
  (floor of odd sizes, as avg_pool2d).
  """
  height, width, channels = fmap1.shape
  corr = jnp.einsum('pc,qc->pq', fmap1.reshape(-1, channels), fmap2.reshape(-1, channels),
                    precision=HIGHEST) / np.sqrt(np.float32(channels))
  pyramid = [corr.reshape(height * width, height, width)]
  for _ in range(levels - 1):
    corr = pyramid[-1]
    h2, w2 = corr.shape[1] // 2, corr.shape[2] // 2
    pooled = corr[:, :2 * h2, :2 * w2].reshape(-1, h2, 2, w2, 2).mean(axis=(2, 4))
    pyramid.append(pooled)
  return pyramid


def corr_lookup(pyramid: list[jax.Array], coords: jax.Array, radius: int) -> jax.Array:
  """Correlation features around coords [h, w, 2] (x, y), 1/8-res px: [h, w, levels (2r+1)^2].

  At level l the (2r+1)^2 window is sampled at coords / 2^l + (dx, dy), dx, dy in -r..r,
  bilinearly with zero padding at pixel centres (grid_sample with align_corners=True, official
  utils.bilinear_sampler). Channel order as the official CorrBlock: level, then dx (slow), then
  dy (fast). The offsets are integers, so one (2r+2)^2 gather and one pair of fractional weights
  per query give all samples.
  """
  height, width = coords.shape[:2]
  size = 2 * radius + 1
  offsets = jnp.arange(size + 1)
  out = []
  for level, corr in enumerate(pyramid):
    h2, w2 = corr.shape[1:]
    centre = coords.reshape(-1, 2) / 2**level
    base = jnp.floor(centre)
    frac = centre - base
    start = base.astype(jnp.int32) - radius
    xs = start[:, :1] + offsets  # [Q, s + 1]
    ys = start[:, 1:] + offsets
    inside = ((ys >= 0) & (ys < h2))[:, :, None] & ((xs >= 0) & (xs < w2))[:, None, :]
    index = jnp.clip(ys, 0, h2 - 1)[:, :, None] * w2 + jnp.clip(xs, 0, w2 - 1)[:, None, :]
    flat = corr.reshape(corr.shape[0], -1)
    window = jnp.take_along_axis(flat, index.reshape(len(flat), -1), axis=1)
    window = jnp.where(inside, window.reshape(index.shape), 0.0)  # [Q, y, x]
    fx, fy = frac[:, 0, None, None], frac[:, 1, None, None]
    upper = window[:, :-1, :-1] * (1 - fx) + window[:, :-1, 1:] * fx
    lower = window[:, 1:, :-1] * (1 - fx) + window[:, 1:, 1:] * fx
    sampled = upper * (1 - fy) + lower * fy  # [Q, dy, dx]
    out.append(jnp.swapaxes(sampled, 1, 2).reshape(height, width, size * size))
  return jnp.concatenate(out, -1)


def convex_upsample(flow: jax.Array, mask: jax.Array) -> jax.Array:
  """[h, w, 2] low-res flow and mask logits [h, w, 576] -> [8h, 8w, 2] px.

  Each fine pixel (8y + a, 8x + b) is a softmax-weighted (convex) combination of 8 x flow at the
  3x3 coarse neighbours of (y, x), zero outside (paper Sec. 3.3; official RAFT.upsample_flow,
  mask channel = neighbour * 64 + a * 8 + b).
  """
  height, width = flow.shape[:2]
  weights = jax.nn.softmax(mask.reshape(height, width, 9, UPSAMPLE, UPSAMPLE), axis=2)
  padded = jnp.pad(UPSAMPLE * flow, ((1, 1), (1, 1), (0, 0)))
  neighbours = jnp.stack([padded[ky:ky + height, kx:kx + width]
                          for ky in range(3) for kx in range(3)], 2)  # [h, w, 9, 2]
  up = jnp.einsum('hwkab,hwkc->hawbc', weights, neighbours, precision=HIGHEST)
  return up.reshape(UPSAMPLE * height, UPSAMPLE * width, 2)


def _interpolation_matrix(size_in: int, size_out: int) -> np.ndarray:
  """[size_out, size_in] linear interpolation weights with align_corners=True."""
  matrix = np.zeros((size_out, size_in), np.float32)
  if size_in == 1:
    matrix[:, 0] = 1
    return matrix
  src = np.arange(size_out) * (size_in - 1) / max(size_out - 1, 1)
  lo = np.minimum(np.floor(src).astype(int), size_in - 2)
  frac = src - lo
  matrix[np.arange(size_out), lo] = 1 - frac
  matrix[np.arange(size_out), lo + 1] += frac
  return matrix


def upflow8(flow: jax.Array) -> jax.Array:
  """[h, w, 2] -> [8h, 8w, 2] px: 8 x bilinear resize, align_corners=True (official upflow8)."""
  height, width = flow.shape[:2]
  rows = _interpolation_matrix(height, UPSAMPLE * height)
  cols = _interpolation_matrix(width, UPSAMPLE * width)
  return UPSAMPLE * jnp.einsum('Yy,yxc,Xx->YXc', rows, flow, cols, precision=HIGHEST)
