"""Ray sampling, alpha compositing, pixel mapping between frames, occlusion and pseudo-depth.

Paper Sec. 3.3 (compositing, frame-to-frame mapping) and the reference's `viz.py` /
`trainer.py` (argmax-weight mapping, opacity-in-front occlusion). Pixels are (x, y) raster px
(integer = pixel centre) in frames of size H x W; frame indices are ints in [0, N). The model is
applied through `model.apply`, so every function here is pure in `params` and can be jitted,
vmapped and differentiated.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from omnimotion_jax import progress
from omnimotion_jax.model import geometry
from omnimotion_jax.model import surface
from omnimotion_jax.model.model import ModelConfig, OmniMotion, build, frame_times, is_surface


@dataclasses.dataclass(frozen=True)
class VideoShape:
  """Size of the video a model is fitted to: N frames of H x W px.

  Python ints (static), or int32 scalars inside the train step, where the size is data
  (`sampler.TrainData.video`) so that padded videos of several sizes share one compiled step.
  """
  num_frames: int
  height: int
  width: int


def compositing_weights(sigma: jax.Array, transmittance_eps: float) -> jax.Array:
  """Blending weights w_k = alpha_k T_k along rays, [..., K] -> [..., K].

  alpha = 1 - exp(-sigma) with no interval length (as in the reference), and the exclusive
  transmittance T_k = prod_{m<k} (1 - alpha_m + eps). The weights are not normalised: sum <= 1.
  """
  alpha = 1.0 - jnp.exp(-sigma)
  trans = jnp.cumprod(1.0 - alpha + transmittance_eps, axis=-1)
  trans = jnp.concatenate([jnp.ones_like(trans[..., :1]), trans[..., :-1]], axis=-1)
  return alpha * trans


def composite(weights: jax.Array, values: jax.Array) -> jax.Array:
  """sum_k w_k v_k: weights [..., K], values [..., K, C] -> [..., C]."""
  return jnp.sum(weights[..., None] * values, axis=-2)


def _apply(model: OmniMotion, params, *args, method):
  return model.apply({'params': params}, *args, method=method)


def remat_chunks(fn, num_chunks: int, *args):
  """fn(*args), computed over `num_chunks` slices of the arrays' leading axis in sequence.

  Each slice runs under jax.checkpoint inside a lax.map, so the backward pass recomputes one
  slice's activations at a time instead of keeping all of them: peak memory falls about
  num_chunks-fold for one extra forward pass. fn must treat the leading axis row-wise (the
  result is the same as fn(*args) up to float rounding). The leading size must divide evenly.
  """
  if num_chunks == 1:
    return fn(*args)
  size = args[0].shape[0]
  if size % num_chunks:
    raise ValueError(f'{size} rows do not split into {num_chunks} equal chunks.')
  split = lambda a: a.reshape((num_chunks, size // num_chunks) + a.shape[1:])
  out = jax.lax.map(lambda chunk: jax.checkpoint(fn)(*chunk), tuple(split(a) for a in args))
  return jax.tree_util.tree_map(lambda o: o.reshape((size,) + o.shape[2:]), out)


def map_pixels(model: OmniMotion, params, px: jax.Array, src_idx: jax.Array, tgt_idx: jax.Array,
               video: VideoShape, key: jax.Array | None = None,
               num_chunks: int = 1) -> dict[str, jax.Array]:
  """Maps pixels of source frames to target frames through the canonical volume.

  Args:
    model: the OmniMotion module (static).
    params: its parameters.
    px: [R, 2] (x, y) raster px in the source frames.
    src_idx: [R] int source frame per ray.
    tgt_idx: [R] int target frame per ray.
    video: the video's shape.
    key: PRNG key for stratified depth samples; None = deterministic samples (inference).
    num_chunks: map the rays in this many rematerialised chunks (see `remat_chunks`); saves
      training memory, R must be a multiple of it.

  Returns:
    A dict with
      'px_mean'    [R, 2] training mapping: the projection of sum_k w_k [z'_k in range] X'_k
                   (not renormalised, so it shrinks towards the image centre if sum w < 1);
      'depth_mean' [R]    its target depth;
      'px_max'     [R, 2] inference mapping: the projection of the max-weight sample X'_argmax;
      'depth_max'  [R]    its target depth;
      'rgb'        [R, 3] rendered source colour sum_k w_k c_k;
      'weights'    [R, K] source-ray blending weights;
      'z'          [R, K] source sample depths;
      'local_src'  [R, K, 3] source local samples X_k;
      'canonical'  [R, K, 3] canonical samples Y_k;
      'local_tgt'  [R, K, 3] target local samples X'_k.
  """
  cfg = model.config
  num_rays = px.shape[0]
  z = geometry.depth_samples(num_rays, cfg.num_samples, cfg.min_depth, cfg.max_depth, key)
  uv = geometry.pixels_to_normalized(px, video.height, video.width)
  x = geometry.ray_points(uv, z)
  t_src = frame_times(src_idx, video.num_frames)[:, None, :]
  t_tgt = frame_times(tgt_idx, video.num_frames)[:, None, :]
  y, rgb, sigma, x_tgt = remat_chunks(
      lambda x, ts, tt: _apply(model, params, x, ts, tt, method=OmniMotion.correspond),
      num_chunks, x, t_src, t_tgt)
  w = compositing_weights(sigma[..., 0], cfg.transmittance_eps)
  z_tgt = x_tgt[..., 2]
  in_range = (z_tgt >= cfg.min_depth) & (z_tgt <= cfg.max_depth)
  mean = composite(w * in_range, x_tgt)
  best = jnp.argmax(w, axis=-1)
  max_loc = jnp.take_along_axis(x_tgt, best[:, None, None], axis=1)[:, 0]
  to_px = lambda p: geometry.normalized_to_pixels(p[..., :2], video.height, video.width)
  return {
      'px_mean': to_px(mean), 'depth_mean': mean[..., 2],
      'px_max': to_px(max_loc), 'depth_max': max_loc[..., 2],
      'rgb': composite(w, rgb), 'weights': w, 'z': z,
      'local_src': x, 'canonical': y, 'local_tgt': x_tgt,
  }


def ray_weights(model: OmniMotion, params, px: jax.Array, frame_idx: jax.Array,
                video: VideoShape) -> tuple[jax.Array, jax.Array]:
  """Blending weights [R, K] and depths [R, K] of deterministic rays at px [R, 2] in frames [R]."""
  cfg = model.config
  z = geometry.depth_samples(px.shape[0], cfg.num_samples, cfg.min_depth, cfg.max_depth)
  x = geometry.ray_points(geometry.pixels_to_normalized(px, video.height, video.width), z)
  t = frame_times(frame_idx, video.num_frames)[:, None, :]

  def density(module, x, t):
    return module.field(module.to_canonical(x, t))[1]

  sigma = model.apply({'params': params}, x, t, method=density)
  return compositing_weights(sigma[..., 0], cfg.transmittance_eps), z


def occlusion_margin(model, eps_factor: float) -> float:
  """Depth margin eps = eps_factor * (max_depth - min_depth) / K of the occlusion test.

  The surface model has no K: its margin is model.surface.occlusion_margin (eps_factor unused).
  """
  cfg = model.config
  if is_surface(model):
    return cfg.occlusion_margin
  return eps_factor * (cfg.max_depth - cfg.min_depth) / cfg.num_samples


def occlusion_from_weights(weights: jax.Array, z: jax.Array, depth: jax.Array,
                           margin: float) -> jax.Array:
  """Opacity in front of a point at `depth` [...] on rays with weights/depths [..., K] -> [...]."""
  in_front = z < (depth[..., None] - margin)
  return jnp.sum(weights * in_front, axis=-1)


def occlusion_score(model: OmniMotion, params, px: jax.Array, frame_idx: jax.Array,
                    depth: jax.Array, video: VideoShape, margin: float) -> jax.Array:
  """Occlusion score [R] of mapped points: px [R, 2], frames [R], target depths [R].

  Casts a deterministic ray at each mapped pixel of its target frame and sums the blending weights
  of the samples in front of the mapped depth (minus `margin`): 1 - transmittance in front.
  """
  w, z = ray_weights(model, params, px, frame_idx, video)
  return occlusion_from_weights(w, z, depth, margin)


def pseudo_depth(model, params, px: jax.Array, frame_idx: jax.Array,
                 video: VideoShape) -> jax.Array:
  """Expected local depth sum_k w_k z_k [R] of deterministic rays at px [R, 2] in frames [R]
  (the surface model: its depth surface there)."""
  if is_surface(model):
    return surface.pseudo_depth(model, params, px, frame_idx, video)
  w, z = ray_weights(model, params, px, frame_idx, video)
  return jnp.sum(w * z, axis=-1)


def make_mapper(model, video: VideoShape, occlusion_margin: float,
                use_max_loc: bool = True, with_occlusion: bool = True):
  """Jitted (params, px [C,2], src [C], tgt [C]) -> (px [C,2], depth [C], occlusion score [C]).

  With with_occlusion=False the occlusion pass is skipped and the score is all zeros. The surface
  model maps its surface points (use_max_loc does not apply) and scores occlusion by its depth
  test (surface.make_mapper).
  """
  if is_surface(model):
    return surface.make_mapper(model, video, occlusion_margin, with_occlusion)

  @jax.jit
  def mapper(params, px, src, tgt):
    out = map_pixels(model, params, px, src, tgt, video)
    key = 'max' if use_max_loc else 'mean'
    mapped, depth = out[f'px_{key}'], out[f'depth_{key}']
    if not with_occlusion:
      return mapped, depth, jnp.zeros_like(depth)
    score = occlusion_score(model, params, mapped, tgt, depth, video, occlusion_margin)
    return mapped, depth, score

  return mapper


@functools.lru_cache(maxsize=8)
def compiled_mapper(model_cfg, video: VideoShape, occlusion_margin: float,
                    use_max_loc: bool = True, with_occlusion: bool = True):
  """`make_mapper` of OmniMotion(model_cfg), cached per process: the videos of one size in a
  suite, or the training and tracking of one video, compile it once."""
  return make_mapper(build(model_cfg), video, occlusion_margin, use_max_loc, with_occlusion)


def map_in_chunks(mapper, params, px: np.ndarray, src: np.ndarray, tgt: np.ndarray,
                  chunk_size: int, desc: str = 'mapping'):
  """Runs `mapper` over rows in fixed-size chunks (last one padded). Returns numpy arrays."""
  num = px.shape[0]
  outs = []
  starts = range(0, num, chunk_size)
  for start in progress.bar(starts, desc=desc, unit='chunk', leave=False):
    stop = min(start + chunk_size, num)
    pad = chunk_size - (stop - start)
    sl = lambda a: np.concatenate([a[start:stop], np.repeat(a[stop - 1:stop], pad, 0)]) if pad \
        else a[start:stop]
    res = mapper(params, jnp.asarray(sl(px), jnp.float32), jnp.asarray(sl(src), jnp.int32),
                 jnp.asarray(sl(tgt), jnp.int32))
    outs.append([np.asarray(r)[:stop - start] for r in res])
  return [np.concatenate(parts) for parts in zip(*outs)]
