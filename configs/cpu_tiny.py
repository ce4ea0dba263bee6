"""Tiny CPU setting for tests and smoke runs: small networks, few samples, few steps.

Overrides only what is needed to make a step cheap on a 2-core CPU; every other field (losses,
schedules, thresholds) is the reference default. It is for checking that things run, not for
tracking quality (see configs/cpu_quality.py for that).

Command:  omnimotion-jax run VIDEO --workdir W --config configs/cpu_tiny.py
"""

from configs import default


def get_config():
  config = default.get_config()
  config.data.max_side = 64
  model = config.model
  model.num_samples = 8
  model.time_net.hidden = 32
  # Three coupling layers (each coordinate moved once) and a 2-layer field: half the compile
  # time of the paper's six layers, which dominates the test suite on a CPU.
  model.bijection.permutation = (0, 1, 2)
  model.canonical.num_layers = 2
  model.time_net.latent_dim = 16
  model.canonical.hidden = 32
  model.bijection.hidden = (32, 32)
  model.bijection.code_proj_dim = 16
  model.bijection.pos_proj_dim = 32
  model.bijection.use_affine = False
  model.bijection.affine_width = 32
  train = config.train
  train.num_steps = 50
  train.sampling.num_pairs = 2
  train.sampling.num_points = 32
  train.remat_chunks = 1  # Small batches: activations fit in cache anyway; no extra forward.
  train.log_every = 10
  train.checkpoint_every = 25
  config.track.chunk_size = 1024
  return config
