"""Multiplicative filter networks with Gabor filters (GaborNet, Fathony et al. 2021).

OmniMotion uses two of them: the time-code network (t -> per-frame latent psi_i) and the canonical
field (contracted canonical point -> colour and density). The initialisation follows the reference
PyTorch code, not Flax's defaults, because the filter frequencies and widths set the network's
spectrum and the early optimisation depends on them (reference `networks/mfn.py`, GaborNet).

Recursion, for an input x [..., d_in]:
  g_l(x) = sin(W_l x + b_l) * exp(-0.5 * gamma_l * ||x - mu_l||^2)      l = 0 .. L
  z_0 = g_0(x);   z_l = g_l(x) * (A_l z_{l-1} + c_l)                    l = 1 .. L
  out = D z_L + e
"""

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from omnimotion_jax.model import fastmath


def torch_linear_init(fan_in: int):
  """PyTorch's default nn.Linear init for weights and biases: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def uniform_init(bound: float):
  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def torch_dense(features: int, fan_in: int, name: str | None = None, **kw) -> nn.Dense:
  """nn.Dense with PyTorch's default Linear initialisation (needs the fan-in up front)."""
  return nn.Dense(features, kernel_init=torch_linear_init(fan_in),
                  bias_init=torch_linear_init(fan_in), name=name, **kw)


# Candidate draws per sample in `gamma_sample`; each is accepted with probability > 0.95.
_GAMMA_CANDIDATES = 16


def gamma_sample(key: jax.Array, shape_param: float, shape: tuple[int, ...]) -> jax.Array:
  """Gamma(shape_param, rate=1) samples by Marsaglia-Tsang with a fixed number of candidates.

  jax.random.gamma compiles a rejection while-loop that costs about a second of XLA compile time
  per call on CPU; this loop-free version takes the first accepted of _GAMMA_CANDIDATES proposals
  (all rejected has probability < 1e-20) and compiles instantly.
  """
  boosted = shape_param < 1.0  # Gamma(a) = Gamma(a + 1) * U^(1/a) for a < 1.
  a = shape_param + 1.0 if boosted else shape_param
  d = a - 1.0 / 3.0
  c = 1.0 / math.sqrt(9.0 * d)
  k_norm, k_unif, k_boost = jax.random.split(key, 3)
  x = jax.random.normal(k_norm, (_GAMMA_CANDIDATES,) + tuple(shape))
  u = jax.random.uniform(k_unif, x.shape, minval=1e-12)
  v = (1.0 + c * x) ** 3
  safe_v = jnp.maximum(v, 1e-12)
  accept = (v > 0) & (jnp.log(u) < 0.5 * x * x + d - d * safe_v + d * jnp.log(safe_v))
  first = jnp.argmax(accept, axis=0)
  sample = d * jnp.take_along_axis(safe_v, first[None], axis=0)[0]
  if boosted:
    sample = sample * jax.random.uniform(k_boost, shape, minval=1e-12) ** (1.0 / shape_param)
  return sample


@dataclasses.dataclass(frozen=True)
class GaborNetConfig:
  """Hyper-parameters of a GaborNet.

  Attributes:
    in_size: input dimension d_in.
    hidden: width of every hidden layer.
    num_layers: number L of multiplicative layers; there are L + 1 Gabor filters.
    out_size: output dimension.
    alpha: filter-width prior; gamma ~ Gamma(alpha / (L + 1), rate=1).
    input_scale: filter frequency scale; rows of W_l are scaled by input_scale/sqrt(L+1)*sqrt(gamma).
    weight_scale: hidden linears are initialised U(+-sqrt(weight_scale / hidden)).
  """
  in_size: int
  hidden: int
  num_layers: int
  out_size: int
  alpha: float
  input_scale: float = 256.0
  weight_scale: float = 1.0


class GaborFilter(nn.Module):
  """One Gabor filter bank: [..., d_in] -> [..., hidden]."""
  in_size: int
  hidden: int
  frequency_scale: float  # input_scale / sqrt(L + 1)
  gamma_shape: float  # alpha / (L + 1)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    gamma = self.param('gamma', lambda k, s: gamma_sample(k, self.gamma_shape, s), (self.hidden,))
    mu = self.param('mu', uniform_init(1.0), (self.hidden, self.in_size))

    def kernel_init(key, shape):
      # Rows (output units) scaled by sqrt(gamma): wider envelopes get lower frequencies.
      w = torch_linear_init(self.in_size)(key, shape)
      return w * self.frequency_scale * jnp.sqrt(jax.lax.stop_gradient(gamma))[None, :]

    kernel = self.param('kernel', kernel_init, (self.in_size, self.hidden))
    bias = self.param('bias', uniform_init(math.pi), (self.hidden,))
    # ||x - mu||^2 expanded, so that it is one small matmul rather than a [..., hidden, d_in] tensor.
    sq_dist = (jnp.sum(x * x, axis=-1, keepdims=True) - 2.0 * x @ mu.T
               + jnp.sum(mu * mu, axis=-1))
    envelope = jnp.exp(-0.5 * gamma * sq_dist)
    return fastmath.sin(x @ kernel + bias) * envelope


class GaborNet(nn.Module):
  """Multiplicative filter network with Gabor filters: [..., in_size] -> [..., out_size]."""
  config: GaborNetConfig

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    cfg = self.config
    # Flat [M, d_in] rows: XLA:CPU's weight-gradient dots are ~1.5x slower on [P, R, K, d] inputs.
    lead = x.shape[:-1]
    x = x.reshape(-1, x.shape[-1])
    num_filters = cfg.num_layers + 1
    filter_kw = dict(in_size=cfg.in_size, hidden=cfg.hidden,
                     frequency_scale=cfg.input_scale / math.sqrt(num_filters),
                     gamma_shape=cfg.alpha / num_filters)
    z = GaborFilter(name='filter_0', **filter_kw)(x)
    hidden_bound = math.sqrt(cfg.weight_scale / cfg.hidden)
    for layer in range(1, num_filters):
      linear = nn.Dense(cfg.hidden, kernel_init=uniform_init(hidden_bound),
                        bias_init=torch_linear_init(cfg.hidden), name=f'linear_{layer}')
      z = GaborFilter(name=f'filter_{layer}', **filter_kw)(x) * linear(z)
    return torch_dense(cfg.out_size, cfg.hidden, name='output')(z).reshape(lead + (cfg.out_size,))
