"""One video's train step split over several devices (data parallelism).

For one large video (the paper config on long, high-resolution footage): each of D devices draws
`num_pairs / D` of the step's pairs with its own key (its index folded into the step's key),
computes the losses and gradients of its share, and the gradients are averaged over the devices
(`lax.pmean`) before one identical Adam update on every device. The state and the data are
replicated; only the rays are split. The mean of per-device losses equals the one-device loss up
to the per-share normalisation of the masked means, so training follows the same objective with
another draw of the same number of rays.
"""

import dataclasses
import functools

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from omnimotion_jax.errors import UserInputError
from omnimotion_jax.model import model as model_lib
from omnimotion_jax.train import sampler
from omnimotion_jax.train import step as step_lib

RAY_AXIS = 'rays'


def replicated(devices) -> NamedSharding:
  """Every device holds the whole array."""
  return NamedSharding(Mesh(np.asarray(devices), (RAY_AXIS,)), PartitionSpec())


def per_device_sampling(samp_cfg: sampler.SamplerConfig, num_devices: int) -> sampler.SamplerConfig:
  """The sampling of one device's share: num_pairs / D pairs (D must divide num_pairs)."""
  if samp_cfg.num_pairs % num_devices:
    raise UserInputError(f'data-parallel training on {num_devices} devices needs '
                         f'train.sampling.num_pairs ({samp_cfg.num_pairs}) to be a multiple of '
                         f'{num_devices}; set it with --set train.sampling.num_pairs=...')
  return dataclasses.replace(samp_cfg, num_pairs=samp_cfg.num_pairs // num_devices)


@functools.lru_cache(maxsize=4)
def compiled_parallel_steps(model_cfg: model_lib.ModelConfig, samp_cfg: sampler.SamplerConfig,
                            loss_cfg: step_lib.LossConfig, opt_cfg: step_lib.OptimConfig,
                            hard_mining_start: int, steps_per_dispatch: int,
                            remat_chunks: int, devices: tuple[jax.Device, ...]):
  """(model, tx, multi-step fn, single-step fn) of one video over `devices`, state donated.

  Same signature and state as `step.compiled_train_steps`; pass the state and data replicated
  (`replicated(devices)`).
  """
  model = model_lib.build(model_cfg)
  tx = step_lib.make_optimizer(opt_cfg, step_lib.param_groups(model))
  train_step = step_lib.make_train_step(
      model, tx, per_device_sampling(samp_cfg, len(devices)), loss_cfg, hard_mining_start,
      step_lib.lr_schedules(opt_cfg), remat_chunks, axis_name=RAY_AXIS)
  mesh = Mesh(np.asarray(devices), (RAY_AXIS,))
  # Everything leaving the step is averaged over the devices or computed from averaged values,
  # so each device's copy is the same; out_specs P() returns one of them.
  split = lambda fn: jax.shard_map(fn, mesh=mesh, in_specs=PartitionSpec(),
                                   out_specs=PartitionSpec(), check_vma=False)
  multi = jax.jit(split(step_lib.make_multi_step(train_step, steps_per_dispatch)),
                  donate_argnums=0)
  single = (jax.jit(split(train_step), donate_argnums=0) if steps_per_dispatch > 1 else multi)
  return model, tx, multi, single
