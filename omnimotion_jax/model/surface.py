"""The surface model: one 3D point per pixel (a learnable depth per frame) and a fast bijection.

A faster-converging alternative to the paper's volume (model.kind='surface'). Pixel p of frame i
lifts to the single local point X = (u, v, D(i, p)) on frame i's depth surface, instead of K
samples along its ray composited through a canonical density field. Frames are tied by the
grid-conditioned monotone coupling T_i (model/grid_coupling.py), exactly invertible as in the
paper, so p maps to frame j as X' = T_j^-1(T_i(X)) and projects orthographically (paper Sec.
3.1's local frames). Occlusion is a depth test: X' is hidden in frame j when it lies behind
frame j's own surface there, D(j, proj(X')) + margin < z(X'). With no K samples and no colour
network, a step costs about 1/20 of the volume model's per correspondence, so the CPU budget
buys ~16x more supervised points (benchmarks/QUALITY.md). After the per-pixel depth and
piecewise-linear bijection of Song et al., "Track Everything Everywhere Fast and Robustly"
(ECCV 2024), without its monocular depth or DINOv2 matches: the depth starts flat here.

Conventions: pixels (x, y) raster px, local points (u, v, z) as in model/geometry.py with
z in [min_depth, max_depth]; the depth surface D is a learnable grid [T_d, H_d, W_d] over
(normalised time, v, u), sampled trilinearly, so its size (like every parameter here) does not
depend on the video's: one compiled step serves padded batches of different videos. Frame i of N
sits at normalised time t_i = i / (N - 1).
"""

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from omnimotion_jax.model import geometry
from omnimotion_jax.model.grid_coupling import GridCoupling, GridCouplingConfig, gather_rows


@dataclasses.dataclass(frozen=True)
class SurfaceConfig:
  """Typed surface-model configuration, built from `config.model` by model.model_config."""
  coupling: GridCouplingConfig
  # Depth surface grid (normalised time, rows, columns); values in depth units.
  depth_grid: tuple[int, int, int] = (32, 64, 64)
  min_depth: float = 0.0
  max_depth: float = 2.0
  # Depth test margin (depth units): a mapped point this far behind the surface is occluded.
  occlusion_margin: float = 0.1

  @property
  def depth_center(self) -> float:
    return 0.5 * (self.min_depth + self.max_depth)


def frame_times(frame_idx: jax.Array, num_frames) -> jax.Array:
  """Frame indices [...] -> normalised times t_i = i / (N - 1) as [..., 1] floats in [0, 1]."""
  return (frame_idx.astype(jnp.float32) / jnp.maximum(num_frames - 1, 1))[..., None]


def sample_volume(grid: jax.Array, tuv: jax.Array) -> jax.Array:
  """Trilinear look-up of grid [T, H, W] at (t, v, u) [..., 3], t in [0, 1], u, v in [-1, 1].

  Clamped at the borders (values beyond the grid extend its edge).
  """
  shape = grid.shape
  size = jnp.array(shape, jnp.float32)
  scale = jnp.stack([size[0] - 1, 0.5 * (size[1] - 1), 0.5 * (size[2] - 1)])
  g = jnp.clip((tuv + jnp.array([0.0, 1.0, 1.0])) * scale, 0.0, size - 1)
  g0 = jax.lax.stop_gradient(jnp.minimum(jnp.floor(g), jnp.maximum(size - 2, 0)))
  f = g - g0
  i0 = g0.astype(jnp.int32)
  index, weights = [], []
  for dt in (0, 1):
    for dy in (0, 1):
      for dx in (0, 1):
        weights.append((f[..., 0] if dt else 1 - f[..., 0]) * (f[..., 1] if dy else 1 - f[..., 1])
                       * (f[..., 2] if dx else 1 - f[..., 2]))
        it = jnp.minimum(i0[..., 0] + dt, shape[0] - 1)
        iy = jnp.minimum(i0[..., 1] + dy, shape[1] - 1)
        ix = jnp.minimum(i0[..., 2] + dx, shape[2] - 1)
        index.append((it * shape[1] + iy) * shape[2] + ix)
  return gather_rows(grid.reshape(-1, 1), jnp.stack(index, -1), jnp.stack(weights, -1))[..., 0]


class DepthSurface(nn.Module):
  """D(t, u, v): the depth of every frame's visible surface, a grid [T_d, H_d, W_d]."""
  shape: tuple[int, int, int]
  init_depth: float

  @nn.compact
  def __call__(self, uv: jax.Array, t: jax.Array) -> jax.Array:
    """uv [..., 2] (u, v), t [..., 1] broadcastable -> depth [...]."""
    grid = self.param('grid', nn.initializers.constant(self.init_depth), self.shape)
    t = jnp.broadcast_to(t, uv.shape[:-1] + (1,))
    return sample_volume(grid, jnp.concatenate([t, uv[..., 1:2], uv[..., 0:1]], axis=-1))


class SurfaceModel(nn.Module):
  """Depth surface + grid-conditioned bijection (module docstring).

  Methods (through `model.apply(variables, ..., method=...)`); t are normalised times [..., 1]:
    depth(uv, t):        surface depth z [...] at normalised (u, v) [..., 2]
    lift(uv, t):         local surface points (u, v, D) [..., 3]
    to_canonical(x, t):  local points [..., 3] -> canonical points
    to_local(y, t):      canonical points -> local points of the frames at times t
  """
  config: SurfaceConfig

  def setup(self):
    cfg = self.config
    self.bijection = GridCoupling(cfg.coupling, name='bijection')
    self.surface = DepthSurface(cfg.depth_grid, cfg.depth_center, name='depth')

  def depth(self, uv, t):
    return self.surface(uv, t)

  def lift(self, uv, t):
    return jnp.concatenate([uv, self.surface(uv, t)[..., None]], axis=-1)

  def _centre(self, x, sign):
    return x + sign * jnp.array([0.0, 0.0, self.config.depth_center], x.dtype)

  def to_canonical(self, x, t):
    return self.bijection.forward(self._centre(x, -1.0), t)

  def to_local(self, y, t):
    return self._centre(self.bijection.inverse(y, t), 1.0)

  def __call__(self, uv, t):
    """Touches every parameter once (initialisation)."""
    return self.to_local(self.to_canonical(self.lift(uv, t), t), t)


@functools.lru_cache(maxsize=16)
def _jitted_init(config: SurfaceConfig):
  model = SurfaceModel(config)  # Compiled once per config and process, as the volume model's.
  return jax.jit(lambda key: model.init(key, jnp.zeros((1, 2), jnp.float32),
                                        jnp.zeros((1, 1), jnp.float32))['params'])


def init_params(model: SurfaceModel, key: jax.Array) -> dict:
  return _jitted_init(model.config)(key)


def _apply(model, params, *args, method):
  return model.apply({'params': params}, *args, method=method)


def map_pixels(model: SurfaceModel, params, px: jax.Array, src_idx: jax.Array,
               tgt_idx: jax.Array, video) -> dict[str, jax.Array]:
  """Maps pixels of source frames to target frames through their surface points.

  Args:
    px: [R, 2] (x, y) px in the source frames; src_idx, tgt_idx: [R] int frames.
    video: render.VideoShape (ints or traced int32 scalars).

  Returns:
    'px' [R, 2] the projection of X' in the target frame; 'depth' [R] its depth z';
    'surface_depth' [R] the target frame's surface depth at 'px'; 'local_src' [R, 3] X;
    'canonical' [R, 3]; 'local_tgt' [R, 3] X'.
  """
  uv = geometry.pixels_to_normalized(px, video.height, video.width)
  t_src = frame_times(src_idx, video.num_frames)
  t_tgt = frame_times(tgt_idx, video.num_frames)

  def path(module, uv, t_src, t_tgt):
    x = module.lift(uv, t_src)
    y = module.to_canonical(x, t_src)
    x_tgt = module.to_local(y, t_tgt)
    return x, y, x_tgt, module.depth(x_tgt[..., :2], t_tgt)

  x, y, x_tgt, surface = model.apply({'params': params}, uv, t_src, t_tgt, method=path)
  return {'px': geometry.normalized_to_pixels(x_tgt[..., :2], video.height, video.width),
          'depth': x_tgt[..., 2], 'surface_depth': surface, 'local_src': x, 'canonical': y,
          'local_tgt': x_tgt}


def occlusion_from_depth(depth: jax.Array, surface_depth: jax.Array, margin: float) -> jax.Array:
  """Occlusion score [...]: 1 where the mapped point lies more than `margin` behind the surface."""
  return (depth > surface_depth + margin).astype(jnp.float32)


def make_mapper(model: SurfaceModel, video, occlusion_margin: float, with_occlusion: bool = True):
  """Jitted (params, px [C,2], src [C], tgt [C]) -> (px [C,2], depth [C], occlusion score [C]),
  the surface model's counterpart of render.make_mapper."""

  @jax.jit
  def mapper(params, px, src, tgt):
    out = map_pixels(model, params, px, src, tgt, video)
    if not with_occlusion:
      return out['px'], out['depth'], jnp.zeros_like(out['depth'])
    return out['px'], out['depth'], occlusion_from_depth(out['depth'], out['surface_depth'],
                                                         occlusion_margin)

  return mapper


def pseudo_depth(model: SurfaceModel, params, px: jax.Array, frame_idx: jax.Array,
                 video) -> jax.Array:
  """Surface depth [R] at px [R, 2] of frames [R] (the pseudo-depth output)."""
  uv = geometry.pixels_to_normalized(px, video.height, video.width)
  return _apply(model, params, uv, frame_times(frame_idx, video.num_frames),
                method=SurfaceModel.depth)
