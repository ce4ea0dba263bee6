"""fastmath.sin/cos against float64 numpy, and their gradients."""

import jax
import numpy as np
import pytest

from omnimotion_jax.model import fastmath


@pytest.mark.parametrize('fn, exact, dexact', [
    (fastmath.sin, np.sin, np.cos), (fastmath.cos, np.cos, lambda x: -np.sin(x))])
@pytest.mark.parametrize('limit', [4.0, 1000.0])
def test_matches_numpy_and_differentiates(fn, exact, dexact, limit):
  x = np.linspace(-limit, limit, 400_001).astype(np.float32)
  x64 = x.astype(np.float64)
  got = np.asarray(jax.jit(fn)(x))
  assert got.dtype == np.float32
  assert np.max(np.abs(got - exact(x64))) < 5e-7
  grad = np.asarray(jax.jit(jax.vmap(jax.grad(fn)))(x))
  assert np.max(np.abs(grad - dexact(x64))) < 2e-6


def test_exact_at_multiples_of_half_pi():
  k = np.arange(-200, 201)
  x = (k * np.pi / 2).astype(np.float32)
  got = np.asarray(jax.jit(fastmath.sin)(x))
  np.testing.assert_allclose(got, np.sin(x.astype(np.float64)), atol=5e-7)
