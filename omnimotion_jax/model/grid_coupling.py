"""A fast per-frame bijection: monotone piecewise-linear couplings conditioned on feature grids.

Each of the blocks moves one coordinate d = permutation[l] of a 3D point (centred local
coordinates, about [-1, 1]^3) through a monotone piecewise-linear map (model/monotone.py) whose
knots depend on the other two coordinates (a, b) and on the frame time t:

  features = [P_l^coarse(a, b), P_l^fine(a, b), L(t)]          (bilinear / linear look-ups)
  logits   = MLP_l(features)  -> input-knot and output-knot logits (S each)
  forward  (local -> canonical), blocks in order:    c_d <- PL(c_d; input knots -> output knots)
  inverse  (canonical -> local), blocks in reverse:  c_d <- PL(c_d; output knots -> input knots)

P_l^coarse and P_l^fine are learnable 2D feature planes over (a, b) (local capacity: a fast arm
does not compete with the background for the same MLP weights), L(t) concatenates learnable 1D
time lines shared by all blocks. The inverse recomputes the same knots from the untouched
coordinates, so the round trip is exact and closed form. The last MLP layer starts at zero, so
every map starts as the identity. After Song et al., "Track Everything Everywhere Fast and
Robustly" (ECCV 2024); sizes and parametrisation here are this project's.

Time features run once per distinct time row and broadcast over points: pass times shaped like
the points' batch shape with size-1 axes (e.g. [P, 1, 1] for points [P, R, 3]).
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from omnimotion_jax.model import monotone


@dataclasses.dataclass(frozen=True)
class GridCouplingConfig:
  """Hyper-parameters of the grid-conditioned coupling stack (configs, model.surface)."""
  permutation: tuple[int, ...] = (0, 1, 2, 0, 1, 2)
  plane_sizes: tuple[int, ...] = (12, 96)
  plane_channels: int = 32
  plane_init_std: float = 0.1
  time_line_sizes: tuple[int, ...] = (8, 32)
  hidden: tuple[int, ...] = (32,)
  num_segments: int = 5
  # Half-width of the domain of every piecewise-linear map (identity outside) and of the planes.
  bound: float = 1.5
  # Smallest segment width, as a fraction of the sigmoid's unit scale (bounds the slopes).
  min_segment: float = 0.05
  leaky_slope: float = 0.01

  def __post_init__(self):
    if any(d not in (0, 1, 2) for d in self.permutation):
      raise ValueError(f'model.surface.permutation={self.permutation}: entries must be 0, 1, 2.')
    if self.num_segments < 1 or not self.plane_sizes or min(self.plane_sizes) < 2:
      raise ValueError('model.surface: num_segments >= 1 and plane sizes >= 2 are required.')
    if len(self.time_line_sizes) != len(self.plane_sizes) or min(self.time_line_sizes) < 2:
      raise ValueError('model.surface.time_line_sizes: one size >= 2 per plane size.')


@jax.custom_vjp
def gather_rows(table: jax.Array, index: jax.Array, weights: jax.Array) -> jax.Array:
  """sum_k weights[..., k] * table[index[..., k]]: table [M, C], index/weights [..., K] -> [..., C].

  A custom VJP: the table's gradient is one segment sum over all K taps. XLA:CPU's own gradient
  of the K separate gathers ran ~8x slower than the forward (benchmarks/README.md, surface model).
  """
  return jnp.einsum('...k,...kc->...c', weights, table[index])


def _gather_rows_fwd(table, index, weights):
  return gather_rows(table, index, weights), (table, index, weights)


def _gather_rows_bwd(res, grad):
  table, index, weights = res
  rows = (weights[..., None] * grad[..., None, :]).reshape(-1, table.shape[-1])
  d_table = jax.ops.segment_sum(rows, index.reshape(-1), table.shape[0])
  d_weights = jnp.einsum('...kc,...c->...k', table[index], grad)
  return d_table, None, d_weights


gather_rows.defvjp(_gather_rows_fwd, _gather_rows_bwd)


def sample_plane(plane: jax.Array, ab: jax.Array, bound: float) -> jax.Array:
  """Bilinear look-up of a feature plane [R, R, C] at (a, b) [..., 2] in [-bound, bound]^2.

  a indexes the first axis, b the second; points outside are clamped to the border.
  """
  size = plane.shape[0]
  g = jnp.clip((ab + bound) * ((size - 1) / (2.0 * bound)), 0.0, size - 1.0)
  g0 = jax.lax.stop_gradient(jnp.minimum(jnp.floor(g), size - 2.0))
  f = g - g0
  i0 = g0.astype(jnp.int32)
  index = i0[..., 0] * size + i0[..., 1]
  index = jnp.stack([index, index + 1, index + size, index + size + 1], axis=-1)
  fa, fb = f[..., 0], f[..., 1]
  weights = jnp.stack([(1 - fa) * (1 - fb), (1 - fa) * fb, fa * (1 - fb), fa * fb], axis=-1)
  return gather_rows(plane.reshape(size * size, -1), index, weights)


def sample_line(line: jax.Array, t: jax.Array) -> jax.Array:
  """Linear look-up of a time line [L, C] at t [..., 1] in [0, 1] -> [..., C]."""
  size = line.shape[0]
  g = jnp.clip(t[..., 0] * (size - 1), 0.0, size - 1.0)
  g0 = jnp.minimum(jnp.floor(g), size - 2.0)
  f = (g - g0)[..., None]
  i0 = g0.astype(jnp.int32)
  return (1 - f) * line[i0] + f * line[i0 + 1]


class GridBlock(nn.Module):
  """One block: knots of coordinate `dim` from space-time features of the other two.

  Features are products of plane and time-line look-ups, sum over resolutions k of
  P_k(a, b) * Q_k(t) per channel (a low-rank space-time factorisation, as in K-planes), so the
  only per-point work besides the look-ups is a small MLP. Time features are per frame.
  """
  config: GridCouplingConfig
  dim: int

  def setup(self):
    cfg = self.config
    init = nn.initializers.normal(cfg.plane_init_std)
    self.planes = [self.param(f'plane_{k}', init, (n, n, cfg.plane_channels))
                   for k, n in enumerate(cfg.plane_sizes)]
    # Time lines start at 1 (+ noise), so each product starts as the plane feature itself.
    line_init = lambda key, shape: 1.0 + init(key, shape)
    self.lines = [self.param(f'time_{k}', line_init, (n, cfg.plane_channels))
                  for k, n in enumerate(cfg.time_line_sizes)]
    self.hidden_layers = [nn.Dense(w, name=f'hidden_{k}') for k, w in enumerate(cfg.hidden)]
    self.out = nn.Dense(2 * cfg.num_segments, kernel_init=nn.initializers.zeros, name='out')
    self.kept = tuple(c for c in range(3) if c != self.dim)

  def condition(self, t: jax.Array) -> tuple[jax.Array, ...]:
    """Per-frame time features, one [..., C] per resolution, from times t [..., 1]."""
    return tuple(sample_line(line, t) for line in self.lines)

  def knots(self, x: jax.Array, cond: tuple[jax.Array, ...]) -> tuple[jax.Array, jax.Array]:
    """(input knots, output knots) [..., S + 1] from the untouched coordinates of x [..., 3]."""
    cfg = self.config
    act = lambda h: nn.leaky_relu(h, cfg.leaky_slope)
    ab = jnp.stack([x[..., c] for c in self.kept], axis=-1)
    h = jnp.concatenate([sample_plane(p, ab, cfg.bound) * q for p, q in zip(self.planes, cond)],
                        axis=-1)
    for layer in self.hidden_layers:
      h = act(layer(h))
    logits = self.out(h)
    s = cfg.num_segments
    knots = lambda z: monotone.knots_from_logits(z, cfg.bound, cfg.min_segment)
    return knots(logits[..., :s]), knots(logits[..., s:])

  def _apply(self, x: jax.Array, cond, inverse: bool) -> jax.Array:
    k_in, k_out = self.knots(x, cond)
    if inverse:
      k_in, k_out = k_out, k_in
    d = self.dim
    moved = monotone.interpolate(x[..., d], k_in, k_out)[..., None]
    return jnp.concatenate([x[..., :d], moved, x[..., d + 1:]], axis=-1)

  def forward(self, x, cond):
    return self._apply(x, cond, inverse=False)

  def inverse(self, y, cond):
    return self._apply(y, cond, inverse=True)


class GridCoupling(nn.Module):
  """T_i for all frames: forward(x, t) local -> canonical, inverse(y, t) canonical -> local.

  x, y: centred points [..., 3]; t: normalised frame times [..., 1] in [0, 1], broadcastable to
  the points' batch shape.
  """
  config: GridCouplingConfig

  def setup(self):
    cfg = self.config
    self.blocks = [GridBlock(cfg, d, name=f'block_{i}') for i, d in enumerate(cfg.permutation)]

  def condition(self, t: jax.Array) -> tuple:
    return tuple(block.condition(t) for block in self.blocks)

  def forward(self, x: jax.Array, t: jax.Array) -> jax.Array:
    for block, c in zip(self.blocks, self.condition(t)):
      x = block.forward(x, c)
    return x

  def inverse(self, y: jax.Array, t: jax.Array) -> jax.Array:
    cond = self.condition(t)
    for block, c in zip(reversed(self.blocks), reversed(cond)):
      y = block.inverse(y, c)
    return y

  def __call__(self, x, t):
    return self.forward(x, t)
