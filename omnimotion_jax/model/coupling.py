"""The invertible per-frame map T_i between a frame's local space and the canonical space.

A stack of RealNVP-style affine coupling layers (paper Sec. 3.2; reference
`networks/nvp_simplified.py`, NVPSimplified). Layer l transforms the single
coordinate d = permutation[l] of a 3D point and conditions on the other two coordinates (through a
positional encoding) and on the frame's latent code psi_i:

  forward  (local -> canonical), layers in order:      y_d <- (y_d - t) * exp(-s)
  inverse  (canonical -> local), layers in reverse:    x_d <- x_d * exp(s) + t

with (s, t) computed from the untouched coordinates, so both directions are exact and analytic.
An optional 2D affine map of (u, v), conditioned on (t_i, z), runs before the couplings in the
forward direction and after them (inverted in closed form) in the inverse direction; z is unchanged
by it, so the inverse recomputes the same parameters.

Shapes: points are [..., 3]; latent codes [..., latent_dim] and frame times [..., 1] only need to
broadcast against the points' batch shape. Per-frame work (the code projections) therefore runs
once per distinct latent row, not once per sample: pass latents shaped e.g. [P, 1, 1, D] for points
shaped [P, R, K, 3].

Initialisation is PyTorch's default Linear init everywhere, as in the reference.
"""

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from omnimotion_jax.model import fastmath
from omnimotion_jax.model.gabor import torch_dense, torch_linear_init


@dataclasses.dataclass(frozen=True)
class BijectionConfig:
  """Hyper-parameters of the coupling stack (see configs/default.py, model.bijection)."""
  permutation: tuple[int, ...] = (0, 1, 2, 0, 1, 2)
  hidden: tuple[int, ...] = (256, 256, 256)
  latent_dim: int = 128
  code_proj_dim: int = 128
  pos_proj_dim: int = 256
  pe_freqs: int = 4
  scale_clamp: float = 8.0
  leaky_slope: float = 0.01
  precision: str = 'highest'
  use_affine: bool = True
  affine_depth: int = 8
  affine_width: int = 256
  affine_pe_freqs: int = 4

  def __post_init__(self):
    if any(d not in (0, 1, 2) for d in self.permutation):
      raise ValueError(f'model.bijection.permutation={self.permutation}: entries must be 0, 1 or 2 '
                       '(the coordinate each coupling layer transforms).')
    if len(self.hidden) < 1:
      raise ValueError('model.bijection.hidden must list at least one hidden width.')
    if self.affine_depth < 2:
      raise ValueError(f'model.bijection.affine_depth={self.affine_depth}: needs >= 2 layers.')


def coupling_encoding(kept: jax.Array, num_freqs: int) -> jax.Array:
  """Positional encoding of the two conditioning coordinates, [..., 2] -> [..., 2 + 4*num_freqs].

  Layout (as in the reference): (a, b, sin(pi 2^k a)_k, cos(pi 2^k a)_k, sin(pi 2^k b)_k,
  cos(pi 2^k b)_k) for k = 0 .. num_freqs-1.
  """
  freqs = math.pi * 2.0 ** jnp.arange(num_freqs, dtype=kept.dtype)
  parts = [kept]
  for c in range(2):
    angles = kept[..., c:c + 1] * freqs
    parts += [fastmath.sin(angles), fastmath.cos(angles)]
  return jnp.concatenate(parts, axis=-1)


def depth_encoding(z: jax.Array, num_freqs: int) -> jax.Array:
  """Interleaved encoding of depth, [..., 1] -> [..., 2*num_freqs]: (sin f0 z, cos f0 z, sin f1 z, ...)."""
  angles = z * (math.pi * 2.0 ** jnp.arange(num_freqs, dtype=z.dtype))
  encoded = jnp.stack([fastmath.sin(angles), fastmath.cos(angles)], axis=-1)
  return encoded.reshape(z.shape[:-1] + (-1,))


class CouplingLayer(nn.Module):
  """One affine coupling layer transforming coordinate `dim` of [..., 3] points."""
  config: BijectionConfig
  dim: int

  def setup(self):
    cfg = self.config
    prec = jax.lax.Precision(cfg.precision)
    act = lambda x: nn.leaky_relu(x, cfg.leaky_slope)
    self._act = act
    self._prec = prec
    self.code_proj = [torch_dense(cfg.code_proj_dim, cfg.latent_dim, precision=prec),
                      torch_dense(cfg.code_proj_dim, cfg.code_proj_dim, precision=prec)]
    pe_dim = 2 + 4 * cfg.pe_freqs
    self.pos_proj = torch_dense(cfg.pos_proj_dim, pe_dim, precision=prec)
    # First (s, t) layer acts on concat(code_proj, pos_proj). It is stored as one
    # [code_proj_dim + pos_proj_dim, hidden] kernel (the reference's layout) but applied as two
    # matmuls, so the code half runs once per frame instead of once per sample.
    fan_in = cfg.code_proj_dim + cfg.pos_proj_dim
    self.st_in_kernel = self.param('st_in_kernel', torch_linear_init(fan_in), (fan_in, cfg.hidden[0]))
    self.st_in_bias = self.param('st_in_bias', torch_linear_init(fan_in), (cfg.hidden[0],))
    self.st_hidden = [torch_dense(w, w_in, precision=prec)
                      for w_in, w in zip(cfg.hidden[:-1], cfg.hidden[1:])]
    self.st_out = torch_dense(2, cfg.hidden[-1], precision=prec)
    self.kept = tuple(c for c in range(3) if c != self.dim)

  def condition(self, latent: jax.Array) -> jax.Array:
    """Per-frame part of the first (s, t) layer: latent [..., D] -> [..., hidden[0]]."""
    h = self._act(self.code_proj[0](latent))
    h = self.code_proj[1](h)
    kernel = self.st_in_kernel[:self.config.code_proj_dim]
    return jnp.matmul(h, kernel, precision=self._prec) + self.st_in_bias

  def scale_shift(self, x: jax.Array, cond: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(s, t) [..., 1] each, from the untouched coordinates of x [..., 3] and cond [..., hidden[0]]."""
    cfg = self.config
    lead = x.shape[:-1]
    # Matmuls on flat [M, d] rows: XLA:CPU's weight-gradient dots are ~1.5x slower on
    # [P, R, K, d] inputs. The per-frame `cond` is added in the batched shape (it broadcasts).
    kept = jnp.stack([x[..., c] for c in self.kept], axis=-1).reshape(-1, 2)
    pos = self._act(self.pos_proj(coupling_encoding(kept, cfg.pe_freqs)))
    h = jnp.matmul(pos, self.st_in_kernel[cfg.code_proj_dim:], precision=self._prec)
    h = self._act(h.reshape(lead + (h.shape[-1],)) + cond)
    h = h.reshape(-1, h.shape[-1])
    for layer in self.st_hidden:
      h = self._act(layer(h))
    st = self.st_out(h).reshape(lead + (2,))
    s = jnp.clip(st[..., 0:1], -cfg.scale_clamp, cfg.scale_clamp)
    return s, st[..., 1:2]

  def forward(self, x: jax.Array, cond: jax.Array) -> jax.Array:
    """Local -> canonical direction: x_d <- (x_d - t) exp(-s)."""
    s, t = self.scale_shift(x, cond)
    d = self.dim
    return jnp.concatenate([x[..., :d], (x[..., d:d + 1] - t) * jnp.exp(-s), x[..., d + 1:]], -1)

  def inverse(self, y: jax.Array, cond: jax.Array) -> jax.Array:
    """Canonical -> local direction: y_d <- y_d exp(s) + t."""
    s, t = self.scale_shift(y, cond)
    d = self.dim
    return jnp.concatenate([y[..., :d], y[..., d:d + 1] * jnp.exp(s) + t, y[..., d + 1:]], -1)

  def __call__(self, x, cond):
    return self.forward(x, cond)


class DepthAffine(nn.Module):
  """2D affine map of (u, v) whose parameters depend on (frame time t_i, depth z).

  An MLP of `affine_depth` layers (ReLU, width `affine_width`) maps [enc(z), t, z] to
  theta = (angle, log s1, tx, log s2, ty); the matrix rows are
  [cos a s1, -sin a s1] and [sin a s2, cos a s2]. The reference builds 8 layers here without
  saying so (its n_layers/hidden_size arguments are swallowed); here depth and width are explicit.
  """
  config: BijectionConfig

  def setup(self):
    cfg = self.config
    in_dim = 2 * cfg.affine_pe_freqs + 2
    widths = [in_dim] + [cfg.affine_width] * (cfg.affine_depth - 1)
    self.hidden_layers = [torch_dense(w, w_in) for w_in, w in zip(widths[:-1], widths[1:])]
    self.out = torch_dense(5, widths[-1])

  def params_for(self, z: jax.Array, t: jax.Array):
    """Matrix [..., 2, 2] and translation [..., 2] for depths z [..., 1] and times t [..., 1]."""
    t = jnp.broadcast_to(t, z.shape)
    h = jnp.concatenate([depth_encoding(z, self.config.affine_pe_freqs), t, z], axis=-1)
    h = h.reshape(-1, h.shape[-1])  # Flat rows: faster weight-gradient dots on XLA:CPU.
    for layer in self.hidden_layers:
      h = nn.relu(layer(h))
    theta = self.out(h).reshape(z.shape[:-1] + (5,))
    angle, s1, s2 = theta[..., 0], jnp.exp(theta[..., 1]), jnp.exp(theta[..., 3])
    cos, sin = fastmath.cos(angle), fastmath.sin(angle)
    matrix = jnp.stack([jnp.stack([cos * s1, -sin * s1], -1),
                        jnp.stack([sin * s2, cos * s2], -1)], -2)
    return matrix, jnp.stack([theta[..., 2], theta[..., 4]], -1)

  def forward(self, x: jax.Array, t: jax.Array) -> jax.Array:
    m, b = self.params_for(x[..., 2:3], t)
    uv = jnp.einsum('...ij,...j->...i', m, x[..., :2], precision='highest') + b
    return jnp.concatenate([uv, x[..., 2:3]], axis=-1)

  def inverse(self, y: jax.Array, t: jax.Array) -> jax.Array:
    m, b = self.params_for(y[..., 2:3], t)
    uv = jnp.einsum('...ij,...j->...i', _inverse_2x2(m), y[..., :2] - b, precision='highest')
    return jnp.concatenate([uv, y[..., 2:3]], axis=-1)


def _inverse_2x2(m: jax.Array) -> jax.Array:
  """Closed-form inverse adj(M) / det(M) of [..., 2, 2] matrices."""
  det = m[..., 0, 0] * m[..., 1, 1] - m[..., 0, 1] * m[..., 1, 0]
  adj = jnp.stack([jnp.stack([m[..., 1, 1], -m[..., 0, 1]], -1),
                   jnp.stack([-m[..., 1, 0], m[..., 0, 0]], -1)], -2)
  return adj / det[..., None, None]


class Bijection(nn.Module):
  """T_i: exact bijection between frame-local and canonical 3D points, shared across frames.

  forward(x, latent, t) maps local points to canonical; inverse(y, latent, t) maps back. Both use
  the same parameters. latent [..., latent_dim] and t [..., 1] broadcast against x's batch shape.
  """
  config: BijectionConfig

  def setup(self):
    cfg = self.config
    self.layers = [CouplingLayer(cfg, d, name=f'coupling_{i}') for i, d in enumerate(cfg.permutation)]
    if cfg.use_affine:
      self.affine = DepthAffine(cfg, name='affine')

  def condition(self, latent: jax.Array) -> tuple[jax.Array, ...]:
    """Per-layer frame conditioning, one [..., hidden[0]] array per coupling layer."""
    return tuple(layer.condition(latent) for layer in self.layers)

  def forward(self, x: jax.Array, latent: jax.Array, t: jax.Array | None = None,
              cond: tuple[jax.Array, ...] | None = None) -> jax.Array:
    """Local points x [..., 3] -> canonical points [..., 3].

    Args:
      x: local points (u, v, z).
      latent: frame codes psi_i, broadcastable to x.shape[:-1] + (latent_dim,).
      t: frame times t_i = (i+1)/N broadcastable to x.shape[:-1] + (1,); needed with the affine
        layers.
      cond: optional precomputed `condition(latent)` (then latent is ignored).
    """
    cond = self.condition(latent) if cond is None else cond
    if self.config.use_affine:
      x = self.affine.forward(x, t)
    for layer, c in zip(self.layers, cond):
      x = layer.forward(x, c)
    return x

  def inverse(self, y: jax.Array, latent: jax.Array, t: jax.Array | None = None,
              cond: tuple[jax.Array, ...] | None = None) -> jax.Array:
    """Canonical points y [..., 3] -> local points [..., 3]. Exact inverse of `forward`."""
    cond = self.condition(latent) if cond is None else cond
    for layer, c in zip(reversed(self.layers), reversed(cond)):
      y = layer.inverse(y, c)
    if self.config.use_affine:
      y = self.affine.inverse(y, t)
    return y

  def __call__(self, x, latent, t=None):
    return self.forward(x, latent, t)
