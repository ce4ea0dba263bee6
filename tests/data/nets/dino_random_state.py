"""Random DINO ViT-S/16 weights from a seed, shared by make_dino_fixtures.py and test_dino.py.

The fixtures store no weights: both sides regenerate the same PyTorch-layout state dict from the
seed and the (key, shape) list kept in the fixture file. Numpy only (runs in the torch venv and in
the project's venv).

Scales keep every layer active: Linear/Conv weights N(0, 1 / fan_in) (unit-variance outputs, so
the attention logits are O(1) and not uniform), LayerNorm scales 1 + N(0, 0.1^2), biases,
CLS token and positional embedding N(0, 0.1^2) and N(0, 0.5^2).
"""

import numpy as np


def random_state(spec: list[tuple[str, tuple[int, ...]]], seed: int) -> dict[str, np.ndarray]:
  """{key: float32 array} for spec [(key, shape)] in order, from one PCG64 stream."""
  rng = np.random.default_rng(seed)
  state = {}
  for key, shape in spec:
    noise = rng.standard_normal(shape)
    if key in ('cls_token', 'pos_embed'):
      value = 0.5 * noise
    elif key.endswith('bias'):
      value = 0.1 * noise
    elif len(shape) == 1:  # LayerNorm weight.
      value = 1.0 + 0.1 * noise
    else:  # Linear [out, in] or Conv2d [out, in, kh, kw].
      value = noise / np.sqrt(np.prod(shape[1:]))
    state[key] = value.astype(np.float32)
  return state


def checksums(state: dict[str, np.ndarray]) -> np.ndarray:
  """float64 [K]: sum of |x| per tensor in key order (detects a changed random stream)."""
  return np.array([np.abs(v.astype(np.float64)).sum() for v in state.values()])
