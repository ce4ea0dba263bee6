"""Several videos in one compiled program: the train step vmapped over a leading video axis.

The state (params, optimiser state, hard-mining maps, counters), the supervision and the root
keys carry a video axis of size B, and `step.make_train_step`'s pure step is mapped over it
(`jax.vmap`, inside a `shard_map` over the devices), so video b computes what training it alone
computes (to float reordering): its own data, its own key (all per-step randomness is
`fold_in(root_key, step)` inside the step), no cross-video term. B videos on D devices run with
no cross-device traffic.

Videos of different lengths, sizes and pair counts are padded to one shape (`pad_data`): the
step reads each video's own (N, H, W) from `TrainData.size`, and the sampler gives padded
frames, pairs and pixels zero probability, so the padding contributes nothing. Per-video states
are kept unpadded (`pad_state` / `crop_state`), so a checkpoint written from a batch is the one
training the video alone would write, and either can resume it.
"""

import functools
from collections.abc import Sequence
from typing import NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from omnimotion_jax.model import model as model_lib
from omnimotion_jax.train import sampler
from omnimotion_jax.train import step as step_lib

VIDEO_AXIS = 'videos'


class PaddedShape(NamedTuple):
  """Common array sizes of a batch: frames, height, width, stored pairs."""
  num_frames: int
  height: int
  width: int
  num_pairs: int


def padded_shape(datas: Sequence[sampler.TrainData]) -> PaddedShape:
  """The smallest shape every video of `datas` fits in."""
  return PaddedShape(*(max(int(v) for v in sizes) for sizes in zip(
      *[(*d.frames.shape[:3], d.pairs.shape[0]) for d in datas])))


def pad_to(x, shape: Sequence[int], value=0):
  """x (numpy) padded at the end of each leading axis to `shape` with `value`."""
  x = np.asarray(x)
  widths = [(0, s - d) for s, d in zip(shape, x.shape)] + [(0, 0)] * (x.ndim - len(shape))
  return np.pad(x, widths, constant_values=value)


def pad_data(data: sampler.TrainData, shape: PaddedShape) -> sampler.TrainData:
  """`data` (numpy) padded to `shape`: zeros everywhere, padded pairs are (0, 0) with no valid
  pixel, unknown motion labels (-1). `data.size` keeps the video's own (N, H, W)."""
  n, h, w, p = shape
  labels = data.motion_labels
  return data.replace(
      frames=pad_to(data.frames, (n, h, w)), pairs=pad_to(data.pairs, (p,)),
      flows=pad_to(data.flows, (p, h, w)), cycle=pad_to(data.cycle, (p, h, w)),
      occluded=pad_to(data.occluded, (p, h, w)), counts=pad_to(data.counts, (n, h, w)),
      pair_counts=pad_to(data.pair_counts, (p,)), adjacent_pair=pad_to(data.adjacent_pair, (n,)),
      size=np.asarray(data.size, np.int32),
      motion_labels=None if labels is None else pad_to(labels, (n, h, w), -1.0))


def pad_state(state: step_lib.TrainState, shape: PaddedShape) -> step_lib.TrainState:
  """A video's state with its hard-mining maps padded by zeros (never sampled there)."""
  return state.replace(error_map=pad_to(state.error_map, shape[:3]),
                       frame_error=pad_to(state.frame_error, shape[:1]))


def crop_state(state: step_lib.TrainState, size: Sequence[int]) -> step_lib.TrainState:
  """The inverse of `pad_state` for a video of size (N, H, W)."""
  n, h, w = (int(v) for v in size)
  return state.replace(error_map=state.error_map[:n, :h, :w], frame_error=state.frame_error[:n])


def stack(trees: Sequence):
  """Per-video pytrees of one structure and shape -> one numpy pytree with a leading video axis."""
  shapes = {tuple(jax.tree_util.tree_leaves(jax.tree_util.tree_map(np.shape, t))) for t in trees}
  if len(shapes) != 1:
    raise ValueError('stacking needs videos of one shape (frames, size, stored pairs); pad them '
                     'first (pad_data, pad_state).')
  return jax.tree_util.tree_map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *trees)


def unstack(tree, index: int):
  """Video `index` of a batched pytree."""
  return jax.tree_util.tree_map(lambda x: x[index], tree)


def video_sharding(devices: Sequence[jax.Device]) -> NamedSharding:
  """Shards a leading video axis over `devices` (a 1-D mesh)."""
  return NamedSharding(Mesh(np.asarray(devices), (VIDEO_AXIS,)), PartitionSpec(VIDEO_AXIS))


def batch_slots(num_videos: int, num_devices: int) -> list[int]:
  """Which video fills each slot of the batch axis: all of them, then copies of the last one
  until the axis divides over the devices (the copies' results are dropped)."""
  slots = -(-num_videos // num_devices) * num_devices
  return list(range(num_videos)) + [num_videos - 1] * (slots - num_videos)


def _per_device(train_step):
  """The step over one device's block of videos [B/D, ...]: the plain step when the block holds
  one video (vmap's batched gathers and matmuls cost ~20 % on CPU), else vmapped."""
  batched = jax.vmap(train_step)

  def local(state, data, keys):
    if keys.shape[0] > 1:
      return batched(state, data, keys)
    squeeze = lambda tree: jax.tree_util.tree_map(lambda x: x[0], tree)
    out = train_step(squeeze(state), squeeze(data), squeeze(keys))
    return jax.tree_util.tree_map(lambda x: x[None], out)

  return local


@functools.lru_cache(maxsize=4)
def compiled_batched_steps(model_cfg: model_lib.ModelConfig, samp_cfg: sampler.SamplerConfig,
                           loss_cfg: step_lib.LossConfig, opt_cfg: step_lib.OptimConfig,
                           hard_mining_start: int, steps_per_dispatch: int, remat_chunks: int,
                           devices: tuple[jax.Device, ...]):
  """(model, tx, multi-step fn, single-step fn) over a video axis, jitted with the state donated.

  The functions take (state, data, root_keys) whose leaves all lead with the video axis B, as
  `stack` builds them, B a multiple of len(devices) (see `batch_slots`). They are a `shard_map`
  over a 1-D 'videos' mesh: each device runs its B/D videos (the plain step if B = D, else
  vmapped) with no cross-device traffic, the dispatch's steps looping on each device (lax.scan
  inside the map).
  """
  model = model_lib.build(model_cfg)
  tx = step_lib.make_optimizer(opt_cfg, step_lib.param_groups(model))
  train_step = step_lib.make_train_step(
      model, tx, samp_cfg, loss_cfg, hard_mining_start, step_lib.lr_schedules(opt_cfg),
      remat_chunks)
  mesh = Mesh(np.asarray(devices), (VIDEO_AXIS,))
  spec = PartitionSpec(VIDEO_AXIS)
  wrap = lambda fn: jax.shard_map(_per_device(fn), mesh=mesh, in_specs=spec, out_specs=spec)
  multi = jax.jit(wrap(step_lib.make_multi_step(train_step, steps_per_dispatch)),
                  donate_argnums=0)
  single = jax.jit(wrap(train_step), donate_argnums=0) if steps_per_dispatch > 1 else multi
  return model, tx, multi, single
