"""Loss terms of the surface model (model.kind='surface'; model/surface.py).

Per sampled correspondence (source pixel p in frame i, flow target q in frame j), with X the
surface point of p, X' = T_j^-1(T_i(X)) and D_j the target frame's depth surface:
  flow      L1 in px between proj(X') and q (as the volume model's flow loss), or with
            flow_robust_px = c > 0 the robust c * log(1 + L1 / c) on pairs at least
            flow_robust_min_gap frames apart (see robust_flow_errors);
  surface   |z(X') - D_j(q)| where the pair's cycle test passed (co-visible points land on the
            visible surface; this is what makes the depth surfaces agree across frames);
  layering  max(0, D_j(q) + margin - z(X')) where the correspondence is reliable but occluded in
            j (the filter's G mask): an occluded point lies behind the surface that hides it. It
            is the only depth-ordering signal besides the optional motion-depth prior;
  smooth    the volume model's 3D acceleration |X_{i-1} - 2 X_i + X_{i+1}| on the surface points;
  depth_smooth  mean squared difference of neighbouring depth-grid cells (fills unobserved
            regions smoothly);
  motion_depth  the motion-depth prior (train/priors.py) on D_i(p), decaying to zero.
"""

import dataclasses

import jax
import jax.numpy as jnp

from omnimotion_jax.data.filtering import in_frame
from omnimotion_jax.model import geometry
from omnimotion_jax.model import surface as surface_lib
from omnimotion_jax.train import losses


@dataclasses.dataclass(frozen=True)
class SurfaceLossConfig:
  """Weights of the surface model's losses (config.train.surface_loss)."""
  w_flow: float
  flow_robust_px: float
  flow_robust_min_gap: int
  w_surface: float
  w_layering: float
  layering_margin: float
  w_smooth: float
  smooth_points_fraction: float
  w_depth_smooth: float
  w_motion_depth: float
  motion_depth_steps: int
  motion_depth_near: float
  motion_depth_far: float

  def weights(self, step: jax.Array) -> dict[str, jax.Array]:
    decay = jnp.clip(1.0 - jnp.asarray(step, jnp.float32) / max(self.motion_depth_steps, 1), 0, 1)
    return {'flow': self.w_flow, 'surface': self.w_surface, 'layering': self.w_layering,
            'smooth': self.w_smooth, 'depth_smooth': self.w_depth_smooth,
            'motion_depth': self.w_motion_depth * decay}


def robust_flow_errors(err: jax.Array, scale: float) -> jax.Array:
  """c * log(1 + e / c) of per-point L1 errors e [M] (px), c = scale (px).

  Equal to e for e << c; its gradient 1 / (1 + e / c) lets a correspondence that stays far from
  what the rest of the video implies (a wrong long-gap flow that passed the filters; the model
  otherwise follows a third of those, benchmarks/QUALITY.md) pull less than one it agrees with.
  Not in the reference, which uses L1 and drops each batch's largest error.
  """
  return scale * jnp.log1p(err / scale)


def depth_grid_smoothness(grid: jax.Array) -> jax.Array:
  """Mean squared difference of neighbouring cells along the two spatial axes of [T, H, W]."""
  dy = grid[:, 1:] - grid[:, :-1]
  dx = grid[:, :, 1:] - grid[:, :, :-1]
  return 0.5 * (jnp.mean(dy * dy) + jnp.mean(dx * dx))


def compute_losses(model: surface_lib.SurfaceModel, params, batch, video,
                   cfg: SurfaceLossConfig, motion_labels: jax.Array | None = None
                   ) -> dict[str, jax.Array]:
  """All surface-model loss terms (unweighted) for one batch (sampler.Batch of B x R points)."""
  b, r = batch.weights.shape
  src = jnp.repeat(batch.src, r)
  tgt = jnp.repeat(batch.tgt, r)
  out = surface_lib.map_pixels(model, params, batch.px_src.reshape(-1, 2), src, tgt, video)
  pred = out['px']
  target = batch.px_tgt.reshape(-1, 2)
  weights = batch.weights.reshape(-1)
  in_image = in_frame(pred, video.height, video.width)
  err = jnp.mean(jnp.abs(pred - target), axis=-1)
  if cfg.flow_robust_px > 0:
    long_gap = jnp.abs(tgt - src) >= cfg.flow_robust_min_gap
    err = jnp.where(long_gap, robust_flow_errors(err, cfg.flow_robust_px), err)
  terms = {'flow': losses.masked_mean_l1(err, in_image, weights, drop_max=False, normalize=False)}

  # Depth of the target frame's surface at the flow target (not at the prediction, which moves).
  uv_target = geometry.pixels_to_normalized(target, video.height, video.width)
  t_tgt = surface_lib.frame_times(tgt, video.num_frames)
  d_target = model.apply({'params': params}, uv_target, t_tgt,
                         method=surface_lib.SurfaceModel.depth)
  z = out['depth']
  target_inside = in_frame(target, video.height, video.width)
  covisible = batch.covisible.reshape(-1) & target_inside & (weights > 0)
  occluded = batch.occluded_tgt.reshape(-1) & target_inside
  count = lambda m: jnp.maximum(jnp.sum(m), 1).astype(jnp.float32)
  terms['surface'] = jnp.sum(jnp.where(covisible, jnp.abs(z - d_target), 0.0)) / count(covisible)
  gap = jax.nn.relu(d_target + cfg.layering_margin - z)
  terms['layering'] = jnp.sum(jnp.where(occluded, gap, 0.0)) / count(occluded)

  # 3D acceleration of the first fraction of each pair's surface points over (i-1, i, i+1).
  s = max(1, int(r * cfg.smooth_points_fraction))
  y = out['canonical'].reshape(b, r, 3)[:, :s]
  x = out['local_src'].reshape(b, r, 3)[:, :s]
  n = video.num_frames
  t_prev = surface_lib.frame_times(jnp.clip(batch.src - 1, 0, n - 1), n)[:, None, :]
  t_next = surface_lib.frame_times(jnp.clip(batch.src + 1, 0, n - 1), n)[:, None, :]
  x_prev, x_next = model.apply({'params': params}, jnp.stack([y, y]), jnp.stack([t_prev, t_next]),
                               method=surface_lib.SurfaceModel.to_local)
  has_both = (batch.src >= 1) & (batch.src <= n - 2)
  terms['smooth'] = losses.smoothness_loss(
      x_prev.reshape(b * s, 1, 3), x.reshape(b * s, 1, 3), x_next.reshape(b * s, 1, 3),
      jnp.repeat(has_both, s), drop_max=False)
  terms['depth_smooth'] = depth_grid_smoothness(params['depth']['grid'])
  if motion_labels is not None:
    wanted = jnp.where(motion_labels > 0.5, cfg.motion_depth_near, cfg.motion_depth_far)
    known = motion_labels >= 0
    terms['motion_depth'] = (jnp.sum(jnp.where(known, jnp.abs(out['local_src'][:, 2] - wanted),
                                               0.0)) / count(known))
  terms['_in_image_frac'] = jnp.mean(in_image)
  return terms
