"""sin and cos built from multiply-adds, for the Gabor filters and positional encodings.

XLA:CPU lowers `jnp.sin`/`jnp.cos` to a scalar-heavy routine that costs ~10 ns per element on the
2-core development machine (15x an `exp`); the GaborNets evaluate hundreds of millions of them
per training step. These versions vectorise: Cody-Waite reduction by pi (with pi split in two so
that k * PI_HI is exact for |x| < 2e5), then the odd Taylor polynomial of degree 11 on
[-pi/2, pi/2] (truncation error < 6e-8), and the sign (-1)^k.

Accuracy in float32 (tests/test_fastmath.py): |fast - exact| < 5e-7 for |x| <= 1e3, about the
size of float32 rounding of x itself. Autodiff goes through the polynomial (the rounding of k has
zero gradient), so d/dx sin(x) is the derivative polynomial, within 2e-6 of cos(x).
"""

import math

import jax
import jax.numpy as jnp

# pi = _PI_HI + _PI_LO with _PI_HI exactly representable in 8 bits, so k * _PI_HI is exact.
_PI_HI = 3.140625
_PI_LO = math.pi - 3.140625
_INV_PI = 1.0 / math.pi
_HALF_PI = 0.5 * math.pi
# Taylor coefficients of sin(r)/r - 1 in r^2, highest first: -1/11!, 1/9!, -1/7!, 1/5!, -1/3!.
_COEFFS = tuple((-1.0) ** ((n - 1) // 2) / math.factorial(n) for n in (11, 9, 7, 5, 3))


def _sin_shifted(x: jax.Array, quarter_turn: bool) -> jax.Array:
  """sin(x + pi/2) if quarter_turn else sin(x); the shift is added after the reduction (exact)."""
  shift = 0.5 if quarter_turn else 0.0
  k = jnp.round(x * _INV_PI + shift)
  r = (x - k * _PI_HI) - k * _PI_LO  # x - k pi, exact to float32 rounding
  if quarter_turn:
    r = r + _HALF_PI
  r2 = r * r  # r in [-pi/2, pi/2]
  p = jnp.asarray(_COEFFS[0], x.dtype)
  for c in _COEFFS[1:]:
    p = c + r2 * p
  s = r + r * r2 * p
  odd = k - 2.0 * jnp.floor(0.5 * k)  # k mod 2, exact for integer-valued k
  return s * (1.0 - 2.0 * odd)


def sin(x: jax.Array) -> jax.Array:
  """Elementwise sin(x), any shape, float32/float64."""
  return _sin_shifted(x, quarter_turn=False)


def cos(x: jax.Array) -> jax.Array:
  """Elementwise cos(x) = sin(x + pi/2), with the quarter turn added after the reduction."""
  return _sin_shifted(x, quarter_turn=True)
