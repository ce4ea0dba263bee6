"""Monotone piecewise-linear maps of one coordinate, with their exact closed-form inverses.

A map is given by S + 1 input knots a_0 < ... < a_S and S + 1 output knots b_0 < ... < b_S with
a_0 = b_0 = -bound and a_S = b_S = +bound. Inside [-bound, bound] it interpolates linearly between
(a_k, b_k); outside it is the identity (slope 1 tails, continuous at the ends). It is strictly
increasing, and its inverse is the same interpolation with the two knot sets swapped, so a round
trip is exact up to float rounding (no iteration). This is the building block of the
grid-conditioned coupling (model/grid_coupling.py), after the piecewise-linear invertible blocks of
Song et al., "Track Everything Everywhere Fast and Robustly" (ECCV 2024).
"""

import jax
import jax.numpy as jnp


def knots_from_logits(logits: jax.Array, bound: float, min_fraction: float) -> jax.Array:
  """Knot positions [..., S + 1] from unconstrained logits [..., S].

  Segment widths are sigmoid(logits) + min_fraction, normalised to span [-bound, bound]; the end
  knots are exactly -bound and +bound. Equal logits give equally spaced knots, so input and output
  knots from equal logits make the identity map (how a coupling block starts).
  """
  widths = jax.nn.sigmoid(logits) + min_fraction
  cum = jnp.cumsum(widths, axis=-1)
  inner = -bound + 2.0 * bound * cum[..., :-1] / cum[..., -1:]
  ends = jnp.full(logits.shape[:-1] + (1,), bound, logits.dtype)
  return jnp.concatenate([-ends, inner, ends], axis=-1)


def interpolate(x: jax.Array, knots_in: jax.Array, knots_out: jax.Array) -> jax.Array:
  """The monotone piecewise-linear map of x [...] through knots [..., S + 1] (module docstring).

  Swapping knots_in and knots_out gives the inverse map.
  """
  num = knots_in.shape[-1]
  xs = x[..., None]
  # Segment index k in [0, S - 1]: the number of interior input knots at or below x.
  seg = jnp.sum(xs >= knots_in[..., 1:num - 1], axis=-1)
  pick = lambda k, a: jnp.take_along_axis(a, k[..., None], axis=-1)[..., 0]
  a0, a1 = pick(seg, knots_in), pick(seg + 1, knots_in)
  b0, b1 = pick(seg, knots_out), pick(seg + 1, knots_out)
  inside = (x >= knots_in[..., 0]) & (x <= knots_in[..., -1])
  y = b0 + (x - a0) * (b1 - b0) / (a1 - a0)
  return jnp.where(inside, y, x)
