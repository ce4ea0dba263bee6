"""Random RAFT weights from a list of (state-dict key, shape), made with numpy alone.

make_raft_fixtures.py (with PyTorch) loads them into torchvision's RAFT and test_raft.py (without
PyTorch) converts the same arrays for the Flax model, so the fixtures store the key/shape list
and the flows, never the weights. Scales follow PyTorch's defaults so that flows stay finite and
moderate: conv weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (nn.Conv2d's init);
BatchNorm affine weights near 1 and biases near 0, running means near 0 and variances near 1.
"""

import numpy as np

SEED = 2020  # RAFT's year; any fixed seed works.
BN_SPREAD = 0.1  # Spread of BatchNorm weights around 1, biases and running means around 0.
VAR_RANGE = (0.5, 1.5)  # Running variances.


def random_state(keys_and_shapes, seed: int = SEED) -> dict[str, np.ndarray]:
  """{key: array} for [(key, shape), ...] in that order, from one numpy generator."""
  rng = np.random.default_rng(seed)
  shapes = {key: tuple(shape) for key, shape in keys_and_shapes}
  state = {}
  for key, shape in keys_and_shapes:
    shape = tuple(shape)
    prefix, leaf = key.rsplit('.', 1)
    weight_shape = shapes.get(f'{prefix}.weight', ())
    if leaf == 'num_batches_tracked':
      state[key] = np.zeros(shape, np.int64)
      continue
    if len(weight_shape) == 4:  # A conv's weight or bias.
      bound = 1 / np.sqrt(np.prod(weight_shape[1:]))
      value = rng.uniform(-bound, bound, shape)
    elif leaf == 'weight':  # A BatchNorm scale.
      value = 1 + rng.uniform(-BN_SPREAD, BN_SPREAD, shape)
    elif leaf == 'running_var':
      value = rng.uniform(*VAR_RANGE, shape)
    else:  # BatchNorm bias and running mean.
      value = rng.normal(0, BN_SPREAD, shape)
    state[key] = value.astype(np.float32)
  return state
