"""Coordinates of the quasi-3D local frames, and depth samples along rays.

Conventions (paper Sec. 3.1; reference `util.py` and `trainer.py`):
  * Pixels are (x, y) raster px with integer values at pixel centres; x is the column.
  * The local frame of every video frame is orthographic: pixel (x, y) maps to
    u = 2x/(W-1) - 1, v = 2y/(H-1) - 1, so both span [-1, 1] whatever the aspect ratio.
    A local 3D point is (u, v, z) with depth z in [min_depth, max_depth].
  * Projection drops z. There are no camera intrinsics.
"""

import jax
import jax.numpy as jnp


def pixels_to_normalized(px: jax.Array, height: int, width: int) -> jax.Array:
  """Raster px (x, y) [..., 2] -> normalised (u, v) [..., 2] in [-1, 1] (pixel centres)."""
  scale = jnp.array([2.0 / (width - 1), 2.0 / (height - 1)], px.dtype)
  return px * scale - 1.0


def normalized_to_pixels(uv: jax.Array, height: int, width: int) -> jax.Array:
  """Normalised (u, v) [..., 2] -> raster px (x, y) [..., 2]. Inverse of pixels_to_normalized."""
  scale = jnp.array([(width - 1) / 2.0, (height - 1) / 2.0], uv.dtype)
  return (uv + 1.0) * scale


def depth_samples(num_rays: int, num_samples: int, min_depth: float, max_depth: float,
                  key: jax.Array | None = None) -> jax.Array:
  """Depths z [num_rays, num_samples] along each ray.

  With key=None, the deterministic z_k = linspace(min, max, K) shared by all rays (inference).
  With a key, stratified: sample k is uniform in [lower_k, upper_k], where the bins are bounded by
  the midpoints of the deterministic samples, and the first and last bins are half-width, so every
  sample stays inside [min_depth, max_depth].
  """
  z = jnp.linspace(min_depth, max_depth, num_samples)
  z = jnp.broadcast_to(z, (num_rays, num_samples))
  if key is None:
    return z
  mids = 0.5 * (z[:, 1:] + z[:, :-1])
  lower = jnp.concatenate([z[:, :1], mids], axis=-1)
  upper = jnp.concatenate([mids, z[:, -1:]], axis=-1)
  u = jax.random.uniform(key, z.shape, z.dtype)
  return lower + (upper - lower) * u


def ray_points(uv: jax.Array, z: jax.Array) -> jax.Array:
  """Local 3D points (u, v, z) [R, K, 3] from rays uv [R, 2] and depths z [R, K]."""
  uv = jnp.broadcast_to(uv[:, None, :], z.shape + (2,))
  return jnp.concatenate([uv, z[..., None]], axis=-1)


def contract(x: jax.Array) -> jax.Array:
  """mip-NeRF-360 contraction of canonical points [..., 3] into the ball of radius 2.

  c(x) = x for ||x|| <= 1, else (2 - 1/||x||) x/||x||. The norm is clamped away from zero so the
  gradient stays finite at the origin (the branch taken there is the identity anyway).
  """
  sq_norm = jnp.sum(x * x, axis=-1, keepdims=True)
  norm = jnp.sqrt(jnp.maximum(sq_norm, 1.0))  # Only used where ||x|| > 1.
  return jnp.where(sq_norm <= 1.0, x, (2.0 - 1.0 / norm) * (x / norm))
