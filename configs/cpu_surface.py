"""Experimental: the surface model (model.kind='surface') on real footage at 256x256, CPU.

cpu_real's data and tracking settings with the one-point-per-pixel surface model and larger
batches (model/surface.py). Measured against cpu_real in benchmarks/QUALITY.md.

Command:  omnimotion-jax run VIDEO --workdir W --config cpu_surface --set data.resize=256,256
"""

from configs import cpu_real

DEFAULT_STEPS = 4000


def get_config(num_steps: int = DEFAULT_STEPS):
  config = cpu_real.get_config(num_steps)
  config.model.kind = 'surface'
  train = config.train
  train.sampling.num_pairs = 16
  train.sampling.num_points = 256
  train.optim.lr_bijection = 3e-3
  train.optim.lr_depth = 1e-2
  loss = train.surface_loss
  loss.w_motion_depth = 1.0
  loss.motion_depth_steps = num_steps // 2
  train.steps_per_dispatch = 10
  return config
