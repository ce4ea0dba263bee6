"""The OmniMotion model: time-code network, per-frame bijections T_i, and the canonical field.

Frame i of an N-frame video has time t_i = (i+1)/N in (0, 1] (the reference's convention). All
methods take times shaped [..., 1] that broadcast against the points' batch shape, and compute the
latent codes psi_i = time_net(t_i) at the times' (small) shape, so per-frame work is not repeated
per sample.
"""

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from omnimotion_jax.model import surface as surface_lib
from omnimotion_jax.model.canonical import CanonicalConfig, CanonicalField
from omnimotion_jax.model.coupling import Bijection, BijectionConfig
from omnimotion_jax.model.gabor import GaborNet, GaborNetConfig
from omnimotion_jax.model.grid_coupling import GridCouplingConfig

# config.model.kind: the paper's volume model, or the one-point-per-pixel surface model.
KINDS = ('volume', 'surface')


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Typed model configuration, built from the `config.model` ConfigDict by `model_config`."""
  time_net: GaborNetConfig
  canonical: CanonicalConfig
  bijection: BijectionConfig
  num_samples: int = 32
  min_depth: float = 0.0
  max_depth: float = 2.0
  # Added inside the transmittance product T_k = prod_{m<k} (1 - alpha_m + eps).
  transmittance_eps: float = 1e-10


def model_config(model_cfg: ml_collections.ConfigDict
                 ) -> ModelConfig | surface_lib.SurfaceConfig:
  """Turns the `config.model` ConfigDict into frozen dataclasses (the module boundary): a
  ModelConfig for model.kind='volume' (the paper's), a SurfaceConfig for 'surface'."""
  if model_cfg.kind not in KINDS:
    raise ValueError(f'model.kind={model_cfg.kind!r}: use one of {KINDS}.')
  if model_cfg.kind == 'surface':
    s = model_cfg.surface
    coupling = GridCouplingConfig(
        permutation=tuple(s.permutation), plane_sizes=tuple(s.plane_sizes),
        plane_channels=s.plane_channels, plane_init_std=s.plane_init_std,
        time_line_sizes=tuple(s.time_line_sizes),
        hidden=tuple(s.hidden), num_segments=s.num_segments, bound=s.bound,
        min_segment=s.min_segment, leaky_slope=s.leaky_slope)
    return surface_lib.SurfaceConfig(
        coupling=coupling, depth_grid=tuple(s.depth_grid), min_depth=model_cfg.min_depth,
        max_depth=model_cfg.max_depth, occlusion_margin=s.occlusion_margin)
  t = model_cfg.time_net
  b = model_cfg.bijection
  return ModelConfig(
      time_net=GaborNetConfig(in_size=1, hidden=t.hidden, num_layers=t.num_layers,
                              out_size=t.latent_dim, alpha=t.alpha, input_scale=t.input_scale,
                              weight_scale=t.weight_scale),
      canonical=CanonicalConfig(**model_cfg.canonical.to_dict()),
      bijection=BijectionConfig(
          permutation=tuple(b.permutation), hidden=tuple(b.hidden), latent_dim=t.latent_dim,
          code_proj_dim=b.code_proj_dim, pos_proj_dim=b.pos_proj_dim, pe_freqs=b.pe_freqs,
          scale_clamp=b.scale_clamp, leaky_slope=b.leaky_slope, precision=b.precision,
          use_affine=b.use_affine, affine_depth=b.affine_depth, affine_width=b.affine_width,
          affine_pe_freqs=b.affine_pe_freqs),
      num_samples=model_cfg.num_samples, min_depth=model_cfg.min_depth,
      max_depth=model_cfg.max_depth, transmittance_eps=model_cfg.transmittance_eps)


def frame_times(frame_idx: jax.Array, num_frames: int) -> jax.Array:
  """Frame indices [...] (int) -> times t_i = (i+1)/N as [..., 1] floats."""
  return ((frame_idx + 1).astype(jnp.float32) / num_frames)[..., None]


class OmniMotion(nn.Module):
  """Time-code network + bijection + canonical field.

  Methods (call through `model.apply(variables, ..., method=...)`):
    latents(t):                 [..., 1] -> psi [..., latent_dim]
    to_canonical(x, t):         local points [..., 3] of the frames at times t -> canonical points
    to_local(y, t):             canonical points [..., 3] -> local points of the frames at times t
    field(y):                   canonical points -> (rgb [..., 3], sigma [..., 1])
    correspond(x, t_src, t_tgt): the whole local(src) -> canonical -> local(tgt) path, returning
                                (canonical points, rgb, sigma, target-local points)
  """
  config: ModelConfig

  def setup(self):
    cfg = self.config
    self.time_net = GaborNet(cfg.time_net)
    self.bijection = Bijection(cfg.bijection)
    self.canonical = CanonicalField(cfg.canonical)

  def latents(self, t: jax.Array) -> jax.Array:
    return self.time_net(t)

  def to_canonical(self, x: jax.Array, t: jax.Array) -> jax.Array:
    return self.bijection.forward(x, self.latents(t), t)

  def to_local(self, y: jax.Array, t: jax.Array) -> jax.Array:
    return self.bijection.inverse(y, self.latents(t), t)

  def field(self, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    return self.canonical(y)

  def correspond(self, x: jax.Array, t_src: jax.Array, t_tgt: jax.Array):
    y = self.to_canonical(x, t_src)
    rgb, sigma = self.field(y)
    return y, rgb, sigma, self.to_local(y, t_tgt)

  def __call__(self, x: jax.Array, t: jax.Array):
    """Touches every sub-network once (used for initialisation)."""
    y, rgb, sigma, x_back = self.correspond(x, t, t)
    return x_back, rgb, sigma


@functools.lru_cache(maxsize=16)
def _jitted_init(config: ModelConfig):
  # One compiled initialiser per model config and process: its many RNG calls take XLA seconds
  # to compile on CPU, and eager op-by-op init is no faster.
  model = OmniMotion(config)
  x = jnp.zeros((1, 1, 3), jnp.float32)
  t = jnp.ones((1, 1, 1), jnp.float32)
  return jax.jit(lambda key: model.init(key, x, t)['params'])


def build(config: ModelConfig | surface_lib.SurfaceConfig) -> nn.Module:
  """The model module for a typed config (OmniMotion or surface.SurfaceModel)."""
  if isinstance(config, surface_lib.SurfaceConfig):
    return surface_lib.SurfaceModel(config)
  return OmniMotion(config)


def is_surface(model: nn.Module) -> bool:
  return isinstance(model, surface_lib.SurfaceModel)


def init_params(model: nn.Module, key: jax.Array) -> dict:
  """Initial parameters of `model` (the `params` collection)."""
  if is_surface(model):
    return surface_lib.init_params(model, key)
  return _jitted_init(model.config)(key)


def count_params(tree) -> int:
  return sum(int(p.size) for p in jax.tree_util.tree_leaves(tree))
