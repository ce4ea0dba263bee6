"""Several videos in one compiled program: the train step vmapped over a leading video axis.

The state (params, optimiser state, hard-mining maps, counters), the supervision and the root
keys carry a video axis of size B, and `step.make_train_step`'s pure step is `jax.vmap`ped over
it, so video b computes exactly what training it alone computes (to float reordering): its own
data, its own key (all per-step randomness is `fold_in(root_key, step)` inside the step), no
cross-video term. With `devices`, the video axis is sharded over a 1-D mesh ('videos'): B videos
on D devices (B a multiple of D) with no cross-device traffic.

Scope today: videos of one shape (same N, H, W and stored pair count), e.g. a synthetic suite or
clips resized to the TAP-Vid raster. Padding videos of different lengths and sizes to a common
shape with masks is the next step (the frame count and size then have to enter as data).
"""

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from omnimotion_jax.model import model as model_lib
from omnimotion_jax.model import render
from omnimotion_jax.train import sampler
from omnimotion_jax.train import step as step_lib

VIDEO_AXIS = 'videos'


def stack(trees: Sequence):
  """Per-video pytrees of one structure and shape -> one pytree with a leading video axis."""
  shapes = {tuple(jax.tree_util.tree_leaves(jax.tree_util.tree_map(np.shape, t))) for t in trees}
  if len(shapes) != 1:
    raise ValueError('batched training needs videos of one shape (frames, size, stored pairs); '
                     'train the others separately.')
  return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)


def unstack(tree, index: int):
  """Video `index` of a batched pytree."""
  return jax.tree_util.tree_map(lambda x: x[index], tree)


def video_sharding(devices: Sequence[jax.Device]) -> NamedSharding:
  """Shards a leading video axis over `devices` (a 1-D mesh)."""
  return NamedSharding(Mesh(np.asarray(devices), (VIDEO_AXIS,)), PartitionSpec(VIDEO_AXIS))


@functools.lru_cache(maxsize=4)
def compiled_batched_steps(model_cfg: model_lib.ModelConfig, video: render.VideoShape,
                           samp_cfg: sampler.SamplerConfig, loss_cfg: step_lib.LossConfig,
                           opt_cfg: step_lib.OptimConfig, hard_mining_start: int,
                           steps_per_dispatch: int, remat_chunks: int = 1,
                           devices: tuple[jax.Device, ...] | None = None):
  """(model, tx, multi-step fn, single-step fn) over a video axis, jitted with the state donated.

  The functions take (state, data, root_keys) whose leaves all lead with the video axis B, as
  `stack` builds them. With `devices`, inputs and outputs are sharded over them along that axis.
  """
  model = model_lib.OmniMotion(model_cfg)
  tx = step_lib.make_optimizer(opt_cfg)
  train_step = jax.vmap(step_lib.make_train_step(
      model, tx, video, samp_cfg, loss_cfg, hard_mining_start, step_lib.lr_schedules(opt_cfg),
      remat_chunks))
  kwargs = {}
  if devices:
    shard = video_sharding(devices)
    kwargs = dict(in_shardings=(shard, shard, shard), out_shardings=(shard, shard))
  multi = jax.jit(step_lib.make_multi_step(train_step, steps_per_dispatch), donate_argnums=0,
                  **kwargs)
  single = (jax.jit(train_step, donate_argnums=0, **kwargs) if steps_per_dispatch > 1
            else multi)
  return model, tx, multi, single
