"""Dense RAFT flow for many frame pairs of one video, and the 'raft' flow backend.

The official RAFT (and the OmniMotion reference's preprocessing/exhaustive_raft.py, which runs it
on all N(N-1) ordered pairs) runs both encoders for every pair. Their outputs depend on one frame
each (instance norm is per image, batch norm uses inference statistics), so here they run once
per frame (`encode_frames`: 2 fnet and 1 cnet passes per pair become N fnet and N cnet passes in
all), and each pair gathers its frames' features. Pairs then run in fixed-size chunks through one
jitted function that vmaps `raft.refine` over the chunk and shards it over the devices with
shard_map over a 1-D mesh (as train/batch.py shards videos: variables and features replicated,
pairs split, no cross-device traffic); the last chunk is padded, so any number of pairs compiles
once per video size.

Frames are padded as the official InputPadder does (core/utils/utils.py, default mode 'sintel'):
to the next multiple of 8 by replicating the edge, half of the padding on each side and the odd
pixel at the bottom / right; flows are cropped back (`Padding`).

Warm start (data.raft_warm_start): the reference sweeps j = i+1, i+2, ... (and i-1, i-2, ...) and
starts each pair from the low-resolution flow of the previous pair of the sweep (official
`flow_init`). `sweep_sources` gives each planned pair its previous pair; `RaftBackend.schedule`
orders the plan by position in the sweeps, so each chunk holds pairs whose sources are done.

Memory per device: the features of all frames, (feature_dim + hidden_dim + context_dim) x 4 B per
1/8-res pixel and frame (512 x 4 B for the standard model: 2 MB per 256x256 frame, 13 MB per
854x480 frame), plus per pair in a chunk its correlation pyramid (5.6 MB at 256x256, 218 MB at
854x480; raft.py) and the GRU activations.
"""

import dataclasses
import functools
import os
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from omnimotion_jax.data import flow as flow_lib
from omnimotion_jax.data.nets import raft
from omnimotion_jax.data.nets import raft_ops
from omnimotion_jax.data.nets import weights as weights_lib
from omnimotion_jax.errors import UserInputError

AXIS = 'batch'  # The 1-D device mesh's axis: pairs, or frames while encoding.
DIVISOR = raft_ops.UPSAMPLE  # Frames are padded to multiples of this.
ENCODE_CHUNK = 4  # Frames per compiled encoder call.
OPTION = 'data.raft_weights'


@dataclasses.dataclass(frozen=True)
class Padding:
  """Pixels added on each side of a frame (official InputPadder, mode 'sintel')."""
  top: int
  bottom: int
  left: int
  right: int

  def pad(self, frames: np.ndarray) -> np.ndarray:
    """[..., H, W, C] -> [..., H + top + bottom, W + left + right, C], edge replicated."""
    widths = [(0, 0)] * (frames.ndim - 3) + [(self.top, self.bottom), (self.left, self.right),
                                             (0, 0)]
    return np.pad(frames, widths, mode='edge')

  def unpad(self, x):
    """[..., Hp, Wp, C] -> [..., Hp - top - bottom, Wp - left - right, C]."""
    height, width = x.shape[-3:-1]
    return x[..., self.top:height - self.bottom, self.left:width - self.right, :]


def input_padding(height: int, width: int) -> Padding:
  """The official InputPadder's padding of an H x W frame to multiples of 8."""
  pad_h, pad_w = -height % DIVISOR, -width % DIVISOR
  return Padding(pad_h // 2, pad_h - pad_h // 2, pad_w // 2, pad_w - pad_w // 2)


class Features(NamedTuple):
  """Per-frame encoder outputs at 1/8 resolution of the padded frames."""
  fmap: jax.Array  # [N, h, w, feature_dim] fnet features.
  net: jax.Array  # [N, h, w, hidden_dim] initial GRU state (tanh).
  inp: jax.Array  # [N, h, w, context_dim] context (relu).


def _sharded(fn, devices: tuple[jax.Device, ...], whole: int, split: int):
  """jit of fn(`whole` arguments, then `split` arguments) as a shard_map over a 1-D mesh of
  `devices`: the first arguments whole on every device, the others and the outputs split along
  their leading axis, with no cross-device traffic."""
  mesh = Mesh(np.asarray(devices), (AXIS,))
  specs = (PartitionSpec(),) * whole + (PartitionSpec(AXIS),) * split
  return jax.jit(jax.shard_map(fn, mesh=mesh, in_specs=specs, out_specs=PartitionSpec(AXIS)))


@functools.lru_cache(maxsize=4)
def compiled_encoder(config: raft.RaftConfig, devices: tuple[jax.Device, ...]):
  """jit(variables, uint8 frames [F, Hp, Wp, 3]) -> Features of the F frames; F a multiple of
  len(devices), split over them."""
  model = raft.RAFT(config)

  def one(variables, frame):
    image = frame.astype(jnp.float32)
    net, inp = model.apply(variables, image, method=raft.RAFT.context)
    return Features(model.apply(variables, image, method=raft.RAFT.features), net, inp)

  def local(variables, frames):
    return jax.vmap(one, in_axes=(None, 0))(variables, frames)

  return _sharded(local, devices, whole=1, split=1)


def encode_frames(config: raft.RaftConfig, variables: dict, frames: np.ndarray,
                  chunk: int = ENCODE_CHUNK,
                  devices: Sequence[jax.Device] | None = None) -> Features:
  """Features of padded frames uint8 [N, Hp, Wp, 3] (Hp, Wp multiples of 8), `chunk` frames
  per call (rounded up to a multiple of the devices, the last call padded), each call's frames
  split over `devices` (default: all local devices)."""
  devices = tuple(jax.local_devices() if devices is None else devices)
  chunk = -(-chunk // len(devices)) * len(devices)
  fn = compiled_encoder(config, devices)
  parts = []
  for start in range(0, len(frames), chunk):
    block = frames[start:start + chunk]
    padded = np.concatenate([block, np.repeat(block[-1:], chunk - len(block), axis=0)])
    parts.append(jax.tree_util.tree_map(lambda x, n=len(block): x[:n], fn(variables, padded)))
  return Features(*[jnp.concatenate(arrays) for arrays in zip(*parts)])


@functools.lru_cache(maxsize=8)
def compiled_pair_fn(config: raft.RaftConfig, iters: int, all_iters: bool,
                     devices: tuple[jax.Device, ...]):
  """jit(variables, features, pairs int32 [P, 2], flow_init float32 [P, h, w, 2]) ->
  (flow_low [P, h, w, 2], flow_up [P, Hp, Wp, 2], or [P, iters, Hp, Wp, 2] if all_iters).

  Pair (i, j) runs `raft.refine` on features i and j and image i's context. P must be a multiple
  of len(devices): a shard_map over a 1-D mesh gives each device P / D pairs and
  replicated variables and features. Compiles once per P and video size.
  """
  model = raft.RAFT(config)

  def one(variables, features, pair, flow_init):
    i, j = pair[0], pair[1]
    return raft.refine(model, variables, features.fmap[i], features.fmap[j], features.net[i],
                       features.inp[i], iters, flow_init, all_iters)

  def local(variables, features, pairs, flow_init):
    return jax.vmap(one, in_axes=(None, None, 0, 0))(variables, features, pairs, flow_init)

  return _sharded(local, devices, whole=2, split=2)


def replicate(tree, devices: Sequence[jax.Device]):
  """`tree` placed whole on every device of a 1-D mesh of `devices`."""
  return jax.device_put(tree, NamedSharding(Mesh(np.asarray(devices), (AXIS,)),
                                            PartitionSpec()))


def pair_flows(config: raft.RaftConfig, variables: dict, features: Features, pairs: np.ndarray,
               *, iters: int, chunk: int, flow_init: np.ndarray | None = None,
               all_iters: bool = False, devices: Sequence[jax.Device] | None = None,
               progress: Callable[[int], object] | None = None) -> tuple[np.ndarray, np.ndarray]:
  """RAFT flows of frame pairs from per-frame features, `chunk` pairs per compiled call.

  Args:
    config, variables: the model (variables and features best `replicate`d over `devices`).
    features: `encode_frames` of the video's padded frames.
    pairs: int [P, 2] (i, j) frame indices: flow from frame i to frame j.
    iters: refinement iterations.
    chunk: pairs per call (rounded up to a multiple of the devices); the last call is padded.
    flow_init: optional float32 [P, h, w, 2] low-res initial flows (warm start); default zeros.
    all_iters: return the flow after every iteration.
    devices: devices to split each call's pairs over (default: all local devices).
    progress: called with the number of pairs of each finished call.

  Returns:
    (flow_up float32 [P, Hp, Wp, 2] px at the padded size (or [P, iters, Hp, Wp, 2]),
     flow_low float32 [P, h, w, 2] in 1/8-res px), on the host.
  """
  devices = tuple(jax.local_devices() if devices is None else devices)
  chunk = -(-chunk // len(devices)) * len(devices)
  fn = compiled_pair_fn(config, iters, all_iters, devices)
  pairs = np.asarray(pairs, np.int32).reshape(-1, 2)
  if flow_init is None:
    flow_init = np.zeros((len(pairs),) + features.fmap.shape[1:3] + (2,), np.float32)
  ups, lows, pending = [], [], None
  for start in range(0, len(pairs), chunk):
    rows = np.minimum(np.arange(start, start + chunk), len(pairs) - 1)  # Pads with the last.
    result = fn(variables, features, pairs[rows], np.asarray(flow_init, np.float32)[rows])
    if pending is not None:  # Fetch the previous call while this one runs.
      _fetch(ups, lows, *pending, progress)
    pending = (min(chunk, len(pairs) - start), result)
  if pending is not None:
    _fetch(ups, lows, *pending, progress)
  return np.concatenate(ups), np.concatenate(lows)


def _fetch(ups: list, lows: list, count: int, result, progress) -> None:
  low, up = result
  lows.append(np.asarray(low)[:count])
  ups.append(np.asarray(up)[:count])
  if progress is not None:
    progress(count)


def sweep_sources(pairs: np.ndarray) -> np.ndarray:
  """int [P]: the row of the pair each planned pair warm-starts from, -1 for none.

  Pair (i, j) starts from the planned pair (i, k) with k the nearest frame to j strictly between
  i and j; the first pair of each sweep (no such k) starts from zero. On the exhaustive plan
  this is (i, j - 1) for j > i + 1 and (i, j + 1) for j < i - 1: the reference's sweeps.
  """
  sweeps: dict[tuple[int, bool], list[tuple[int, int]]] = {}
  for row, (i, j) in enumerate(np.asarray(pairs)):
    sweeps.setdefault((int(i), bool(j > i)), []).append((abs(int(j) - int(i)), row))
  sources = np.full(len(pairs), -1, np.int64)
  for members in sweeps.values():
    rows = [row for _, row in sorted(members)]
    sources[rows[1:]] = rows[:-1]
  return sources


def sweep_depths(sources: np.ndarray) -> np.ndarray:
  """int [P]: each pair's position in its sweep (0 for the first), from `sweep_sources`."""
  depths = np.full(len(sources), -1, np.int64)
  for row in range(len(sources)):
    chain = []
    while row >= 0 and depths[row] < 0:
      chain.append(row)
      row = sources[row]
    depth = depths[row] if row >= 0 else -1
    for member in reversed(chain):
      depth += 1
      depths[member] = depth
  return depths


def load_variables(path: str | os.PathLike | None, kind: str) -> dict:
  """RAFT variables from a converted weights file, checked against the model's shapes; errors
  (one line) name the file, data.raft_weights and the converter command."""
  variables, _ = weights_lib.load_weights(path, kind, OPTION)
  weights_lib.check_shapes(variables, raft.variable_shapes(kind), path, kind, OPTION)
  return variables


class RaftBackend(flow_lib.FlowBackend):
  """RAFT flow of the processed frames from converted weights (data.flow_backend='raft')."""
  name = 'raft'
  cacheable = True

  def __init__(self, frames: np.ndarray, options: flow_lib.RaftOptions,
               devices: Sequence[jax.Device] | None = None):
    """frames: uint8 [N, H, W, 3] RGB (processed); options: config.data's raft_* fields."""
    if options.model not in raft.MODELS:
      raise UserInputError(f'data.raft_model={options.model!r}: use one of {tuple(raft.MODELS)}'
                           ' (the kind of the weights file).')
    variables = load_variables(options.weights, options.model)
    super().__init__(frames.shape[1:3])
    self.options = options
    self.config = raft.MODELS[options.model]
    self.devices = tuple(jax.local_devices() if devices is None else devices)
    self.padding = input_padding(*self.size)
    self._digest = weights_lib.content_digest(options.weights)
    self.variables = replicate(variables, self.devices)
    self._frames = frames
    self._features = None  # Encoded on first use.
    self._source: dict[tuple[int, int], tuple[int, int]] = {}  # Warm start: pair -> its source.
    self._low: dict[tuple[int, int], np.ndarray] = {}  # Low-res flows not yet used as a start.

  def features(self) -> Features:
    """The frames' encoder outputs, computed once and replicated over the devices."""
    if self._features is None:
      features = encode_frames(self.config, self.variables, self.padding.pad(self._frames),
                               devices=self.devices)
      self._features = replicate(features, self.devices)
    return self._features

  def schedule(self, pairs: np.ndarray) -> np.ndarray:
    """With warm start: records each pair's source (`sweep_sources`) and returns the plan's rows
    ordered by sweep position; without: the plan order."""
    if not self.options.warm_start:
      return np.arange(len(pairs))
    sources = sweep_sources(pairs)
    self._source = {(int(i), int(j)): tuple(int(v) for v in pairs[s])
                    for (i, j), s in zip(pairs, sources) if s >= 0}
    return np.argsort(sweep_depths(sources), kind='stable')

  def flow(self, i: int, j: int) -> np.ndarray:
    return self.flows(np.array([[i, j]]))[0]

  def flows(self, pairs: np.ndarray, progress=None) -> np.ndarray:
    """float32 [P, H, W, 2] flows of pairs int [P, 2]; with warm start, in rounds of pairs whose
    sources are done (their sources must be done or among `pairs`)."""
    pairs = np.asarray(pairs).reshape(-1, 2)
    keys = [(int(i), int(j)) for i, j in pairs]
    out = np.empty((len(pairs),) + self.size + (2,), np.float32)
    todo = list(range(len(pairs)))
    while todo:
      pending = {keys[r] for r in todo}
      ready = [r for r in todo if self._source.get(keys[r]) not in pending]
      missing = [keys[r] for r in ready if keys[r] in self._source
                 and self._source[keys[r]] not in self._low]
      if missing:
        raise ValueError(f'pair {missing[0]} warm-starts from {self._source[missing[0]]}, which '
                         'is not computed yet: compute pairs in the order schedule() gives.')
      init = None
      if self._source:
        h, w = self.features().fmap.shape[1:3]
        init = np.stack([self._low.pop(self._source[keys[r]]) if keys[r] in self._source
                         else np.zeros((h, w, 2), np.float32) for r in ready])
      up, low = pair_flows(self.config, self.variables, self.features(), pairs[ready],
                           iters=self.options.iters, chunk=self.options.chunk, flow_init=init,
                           devices=self.devices, progress=progress)
      out[ready] = self.padding.unpad(up)
      self._keep_sources([keys[r] for r in ready], low)
      todo = [r for r in todo if r not in set(ready)]
    return out

  def _keep_sources(self, keys: list[tuple[int, int]], lows: np.ndarray) -> None:
    """Keeps the low-res flows of pairs that some scheduled pair starts from."""
    wanted = set(self._source.values())
    for key, low in zip(keys, lows):
      if key in wanted:
        self._low[key] = low

  def cache_arrays(self, pairs: np.ndarray) -> dict[str, np.ndarray]:
    """With warm start, the low-res flows of `pairs` that later pairs will start from (zeros for
    the others), so that a run resumed from the cache starts those pairs alike."""
    if not self.options.warm_start:
      return {}
    zeros = np.zeros(self.features().fmap.shape[1:3] + (2,), np.float32)
    return {'low': np.stack([self._low.get((int(i), int(j)), zeros) for i, j in pairs])}

  def restore(self, pairs: np.ndarray, arrays: dict[str, np.ndarray]) -> bool:
    """Takes back what `cache_arrays` saved for `pairs` (loaded from the cache instead of
    computed); False if it is not there."""
    if not self.options.warm_start:
      return True
    if 'low' not in arrays or len(arrays['low']) != len(pairs):
      return False
    keys = [(int(i), int(j)) for i, j in pairs]
    self._keep_sources(keys, arrays['low'])
    for key in keys:  # Their sources are used now (also those among `pairs`).
      self._low.pop(self._source.get(key), None)
    return True

  def fingerprint(self) -> str:
    o = self.options
    return (f'raft:{o.model}:iters={o.iters}:warm_start={bool(o.warm_start)}:'
            f'weights={self._digest}:jax-{jax.__version__}')
