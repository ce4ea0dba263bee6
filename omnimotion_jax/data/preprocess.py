"""Video -> supervision: frames, pair plan, flows, filters, chaining, counts -> store arrays.

`preprocess_frames(frames, ..., config.data)` computes the store's arrays (store.py) from frames
in memory; `pipeline.preprocess_stage` reads the input, calls it and writes the run folder's
sequence.npz and preprocess.json (workdir.py).

Order (reference `preprocessing/main_processing.py`): direct flow for every planned pair and
its reverse (pairs.py), the forward-backward / occlusion / feature filter (filtering.filter_pair),
chaining of adjacent flows to the longer pairs (filtering.chain_flows, if data.chain), count maps.
The feature checks use per-frame features from a folder (data.features_dir, or a reference
folder's features/dino) or, with data.dino_weights, DINO ViT-S/16 features computed from the
processed frames (`computed_features`, nets/dino.py).
With an 'omnimotion_dir' sequence that has raft_masks/, its flows and masks are stored as they are.

Resuming: direct flows of expensive backends (DIS, DeepFlow, RAFT) are cached in chunks of
CACHE_CHUNK pairs, so an interrupted run recomputes only unfinished chunks. Direct flows are
rounded to float16 whether cached or not, so a resumed run gives bit-identical results.
"""

import dataclasses
import hashlib
import json
import time
from pathlib import Path

import numpy as np

from omnimotion_jax import fileio
from omnimotion_jax import progress
from omnimotion_jax.data import filtering
from omnimotion_jax.data import flow as flow_lib
from omnimotion_jax.data import pairs as pairs_lib
from omnimotion_jax.data import store as store_lib
from omnimotion_jax.data import video as video_lib
from omnimotion_jax.data.nets import dino as dino_lib
from omnimotion_jax.data.nets import weights as weights_lib
from omnimotion_jax.config import config_hash
from omnimotion_jax.errors import UserInputError

# config.data fields recorded in the store's meta.
META_FIELDS = ('max_side', 'stride', 'max_frames', 'pair_plan', 'dense_gap', 'long_stride',
               'long_gap_growth', 'max_gap', 'chain', 'cycle_threshold', 'occlusion_cycle_threshold',
               'occlusion_return_threshold', 'occlusion_max_gap', 'chain_rgb_threshold',
               'feature_similarity_threshold', 'feature_check_min_gap', 'direct_agreement_px',
               'require_agreement', 'agreement_px_per_frame', 'single_witness')
CACHE_CHUNK = 64  # Direct flows per cache file (~16 MB at 256x256 in float16).
FEATURES_SUBDIR = ('features', 'dino')  # Per-frame features inside a reference sequence folder.


def preprocess_frames(frames: np.ndarray, frame_indices: np.ndarray, data_cfg, *,
                      input_size: tuple[int, int], flow_dir=None, seq_dir=None,
                      features: np.ndarray | None = None,
                      cache_dir: Path | None = None) -> tuple[dict, dict]:
  """Frames -> the store's arrays: pair plan, direct flows, filters, chaining, counts.

  Args:
    frames: uint8 [N, H, W, 3] processed frames; frame_indices: int [N] their input indices.
    data_cfg: config.data.
    input_size: (H, W) of the input video (flows read from files may be at that size).
    flow_dir, seq_dir: the 'files' backend's flow folder, the 'omnimotion_dir' sequence folder.
    features: optional per-frame features [N, h, w, C] (enables the feature checks).
    cache_dir: if set, direct flows of expensive backends are cached there in chunks, so an
      interrupted call resumes (bit-identically: flows are float16 either way).

  Returns:
    (arrays, facts): `store.write_store` keyword arrays (all but meta), and facts for the meta
    and the report (backend, plan summary, masks_from, flows computed / from cache, timings s).
  """
  c = data_cfg
  timings = {}
  num_frames = len(frames)
  plan = pairs_lib.make_plan(c.pair_plan, num_frames, c.dense_gap, c.long_stride, c.max_gap,
                             c.long_gap_growth)
  backend = flow_lib.make_backend(c.flow_backend, frames, dis_preset=c.dis_preset,
                                  flow_dir=flow_dir, pattern=c.flow_pattern,
                                  frame_indices=frame_indices, input_size=input_size,
                                  seq_dir=seq_dir, raft=flow_lib.RaftOptions(
                                      c.raft_weights, c.raft_model, c.raft_iters,
                                      c.raft_warm_start, c.raft_chunk))
  # 1. Direct flows (cached in chunks for expensive backends).
  t0 = time.perf_counter()
  precomputed_masks = backend.has_masks
  flow_pairs = plan.pairs if precomputed_masks else plan.direct
  cache_key = json.dumps({'backend': backend.fingerprint(), 'frames': _hash_array(frames),
                          'pairs': _hash_array(flow_pairs)}, sort_keys=True)
  direct, num_cached = compute_flows(backend, flow_pairs, cache_dir, cache_key, CACHE_CHUNK)
  timings['flow'] = time.perf_counter() - t0

  # 2. Filtering.
  t0 = time.perf_counter()
  rows = filtering.pair_lookup(flow_pairs)
  stored_rows = np.array([rows[(int(i), int(j))] for i, j in plan.pairs])
  # The exhaustive plan stores exactly its direct pairs: avoid a copy of GBs of flows.
  same_rows = np.array_equal(stored_rows, np.arange(len(flow_pairs)))
  stored_flows = direct if same_rows else direct[stored_rows]
  if precomputed_masks:
    masks = [backend.masks(int(i), int(j)) for i, j in plan.pairs]
    cycle = np.stack([m[0] for m in masks])
    occluded = np.stack([m[1] for m in masks])
  else:
    cycle, occluded = filter_pairs(plan.pairs, direct, rows, c, features)
  del direct
  timings['filter'] = time.perf_counter() - t0

  # 3. Chaining (not for reference folders with masks: their flows are already chained).
  t0 = time.perf_counter()
  if c.chain and not precomputed_masks:
    flows, cycle = filtering.chain_flows(
        plan.pairs, stored_flows, cycle, occluded, frames, rgb_threshold=c.chain_rgb_threshold,
        features=features, feature_similarity_threshold=c.feature_similarity_threshold,
        direct_agreement_px=c.direct_agreement_px, require_agreement=c.require_agreement,
        agreement_px_per_frame=c.agreement_px_per_frame, single_witness=c.single_witness)
  else:
    flows = stored_flows
  timings['chain'] = time.perf_counter() - t0

  # 4. Counts.
  t0 = time.perf_counter()
  counts, pair_counts = filtering.count_maps(plan.pairs, cycle | occluded, num_frames)
  timings['count'] = time.perf_counter() - t0
  arrays = dict(frames=frames, frame_indices=frame_indices, pairs=plan.pairs, flows=flows,
                cycle=cycle, occluded=occluded, counts=counts, pair_counts=pair_counts)
  facts = {'backend': backend.fingerprint(), 'plan': plan.summary(),
           'masks_from': 'omnimotion_dir' if precomputed_masks else 'filter',
           'flows_computed': len(flow_pairs) - num_cached, 'flows_from_cache': num_cached,
           'timings_s': timings}
  return arrays, facts


def describe(arrays: dict, facts: dict, data_cfg, *, key: str, source: str,
             input_size: tuple[int, int], input_frames: int, fps: float | None,
             features_dir) -> tuple[dict, dict]:
  """(meta, report) of a store: what the store's meta records, and preprocess.json's content
  without its 'store' path and store size."""
  c, (height, width) = data_cfg, arrays['frames'].shape[1:3]
  meta = {
      'preprocess_key': key, 'config_hash': config_hash(c), 'source': source,
      'input_size': list(input_size), 'input_frames': input_frames, 'fps': fps,
      'size': [height, width], 'resize': None if c.resize is None else tuple(c.resize),
      'backend': facts['backend'], 'masks_from': facts['masks_from'],
      'features': None if features_dir is None else str(features_dir),
      **{name: c[name] for name in META_FIELDS}}
  pairs, pair_counts = arrays['pairs'], arrays['pair_counts']
  report = {
      'preprocess_key': key, 'source': source, 'num_frames': len(arrays['frames']),
      'size': [height, width], 'input_size': list(input_size), 'backend': facts['backend'],
      'plan': facts['plan'], 'flows_computed': facts['flows_computed'],
      'flows_from_cache': facts['flows_from_cache'],
      'bytes': {'flows': int(np.prod(arrays['flows'].shape)) * 2,
                'masks': 2 * len(pairs) * ((height * width + 7) // 8),
                'frames': arrays['frames'].nbytes, 'counts': arrays['counts'].nbytes},
      'valid_fraction_per_gap': _valid_fraction_per_gap(pairs, pair_counts, height * width)}
  return meta, report


def read_frames(video, inp, data_cfg) -> tuple[np.ndarray, np.ndarray, dict, np.ndarray | None]:
  """(frames [N, H, W, 3], input indices [N], probe {num_frames, height, width, fps}, features)
  of a preprocessing input, selected and resized by config.data."""
  c = data_cfg
  resize = None if c.resize is None else tuple(c.resize)
  if isinstance(video, np.ndarray):
    frames, frame_indices = video_lib.select_frames(video, resize, c.max_side, c.stride,
                                                    c.max_frames)
    probe = {'num_frames': len(video), 'height': video.shape[1], 'width': video.shape[2],
             'fps': None}
  else:
    frames, frame_indices = video_lib.load_video(inp.frames_path, resize=resize,
                                                 max_side=c.max_side, stride=c.stride,
                                                 max_frames=c.max_frames, return_indices=True)
    probe = video_lib.probe_video(inp.frames_path)
  features = None
  if inp.features_dir is not None:
    stems = None if inp.frames_path is None else _frame_stems(inp.frames_path, frame_indices)
    features = load_features(inp.features_dir, frame_indices, stems)
  return frames, frame_indices, probe, features


@dataclasses.dataclass(frozen=True)
class _Input:
  """Where `preprocess` reads from, and the key that says whether its store is up to date."""
  key: str
  source: str  # For messages and the store's meta.
  frames_path: Path | None  # A video file or frame folder; None for frames in memory.
  seq_dir: Path | None  # A reference sequence folder ('omnimotion_dir').
  flow_dir: Path | None
  features_dir: Path | None
  dino_weights: Path | None = None  # Set when DINO features are computed (data.dino_weights).

  @property
  def features_source(self) -> str | None:
    """What the feature checks use (for the store's meta): a folder, DINO weights or None."""
    if self.dino_weights is not None:
      return f'{dino_lib.KIND}:{self.dino_weights}'
    return None if self.features_dir is None else str(self.features_dir)


def load_input(video, c, workdir: Path, *, flow_dir=None, features_dir=None) -> _Input:
  """Checks a preprocessing input and fingerprints it with config.data `c` (frames by content,
  files by path, size and mtime, DINO weights by content). video: a file or folder, or uint8
  frames [T, H, W, 3]."""
  if c.flow_backend not in flow_lib.BACKENDS:
    raise UserInputError(f'data.flow_backend={c.flow_backend!r}: unknown backend; use one of '
                         f'{flow_lib.BACKENDS}.')
  cfg_hash = _raft_weights(c, config_hash(c))
  flow_dir = flow_dir if flow_dir is not None else c.flow_dir
  features_dir = features_dir if features_dir is not None else c.features_dir
  if isinstance(video, np.ndarray):
    if c.flow_backend == 'omnimotion_dir':
      raise UserInputError('data.flow_backend=omnimotion_dir reads a sequence folder, not frames.')
    dino_weights, cfg_hash = _dino_weights(c, features_dir, cfg_hash)
    digest = hashlib.sha256(f'{cfg_hash}:{_hash_array(video)}'.encode()).hexdigest()
    return _Input(_fingerprint([flow_dir, features_dir], digest, exclude=workdir),
                  f'frames {list(video.shape)}', None, None, flow_dir, features_dir, dino_weights)
  path = Path(video)
  if not path.exists():
    raise UserInputError(f'{path}: no such file or folder; pass a video file or a folder of '
                         'frames.')
  seq_dir, frames_path = None, path
  if c.flow_backend == 'omnimotion_dir':
    flow_lib.check_omnimotion_dir(path)
    seq_dir, frames_path = path, path / flow_lib.COLOR_DIR
    if features_dir is None and path.joinpath(*FEATURES_SUBDIR).is_dir():
      features_dir = path.joinpath(*FEATURES_SUBDIR)
  dino_weights, cfg_hash = _dino_weights(c, features_dir, cfg_hash)
  key = _fingerprint([path, flow_dir, features_dir], cfg_hash, exclude=workdir)
  return _Input(key, str(path.resolve()), frames_path, seq_dir, flow_dir, features_dir,
                dino_weights)


def _dino_weights(c, features_dir, cfg_hash: str) -> tuple[Path | None, str]:
  """(data.dino_weights, cfg_hash extended by the file's content hash) when DINO features are
  computed (the field set, no features folder), else (None, cfg_hash). Checks the file now."""
  if features_dir is not None or not c.dino_weights:
    return None, cfg_hash
  if c.dino_batch < 1:
    raise UserInputError(f'data.dino_batch={c.dino_batch}: pass at least 1 (frames per DINO call).')
  path = Path(c.dino_weights)
  dino_lib.load_variables(path)  # A missing or wrong file fails before any work.
  return path, f'{cfg_hash}:{dino_lib.KIND}:{weights_lib.content_digest(path)}'


def computed_features(frames: np.ndarray, inp: _Input, data_cfg) -> np.ndarray | None:
  """DINO features float32 [N, h, w, 384] of the processed frames uint8 [N, H, W, 3] when `inp`
  computes them (data.dino_weights, dino.dino_features), else None."""
  if inp.dino_weights is None:
    return None
  return dino_lib.dino_features(frames, dino_lib.load_variables(inp.dino_weights),
                                batch_size=data_cfg.dino_batch)


def _raft_weights(c, cfg_hash: str) -> str:
  """cfg_hash extended by data.raft_weights' content hash for the 'raft' backend (the file is
  checked now, before any work)."""
  if c.flow_backend != 'raft':
    return cfg_hash
  weights_lib.load_weights(c.raft_weights, c.raft_model, 'data.raft_weights')
  return f'{cfg_hash}:raft:{weights_lib.content_digest(c.raft_weights)}'


def filter_pairs(pairs: np.ndarray, direct: np.ndarray, rows: dict, c,
                 features: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
  """(cycle, occluded) bool [P, H, W] masks of the stored `pairs` from their direct flows.

  direct: float16 [D, H, W, 2] flows of the direct pairs, row rows[(i, j)] for pair (i, j) (both
  directions are needed); c: config.data; features: optional [N, h, w, C].
  """
  cycle = np.empty((len(pairs),) + direct.shape[1:3], bool)
  occluded = np.empty_like(cycle)
  for k, (i, j) in enumerate(progress.bar(pairs, desc='filter', unit='pair')):
    i, j = int(i), int(j)
    cycle[k], occluded[k] = filtering.filter_pair(
        direct[rows[(i, j)]], direct[rows[(j, i)]], abs(i - j),
        cycle_threshold=c.cycle_threshold, occlusion_cycle_threshold=c.occlusion_cycle_threshold,
        occlusion_return_threshold=c.occlusion_return_threshold,
        occlusion_max_gap=c.occlusion_max_gap,
        features_i=None if features is None else features[i],
        features_j=None if features is None else features[j],
        feature_similarity_threshold=c.feature_similarity_threshold,
        feature_check_min_gap=c.feature_check_min_gap)
  return cycle, occluded


def compute_flows(backend: flow_lib.FlowBackend, pairs: np.ndarray, cache_dir: Path | None,
                  cache_key: str, chunk: int) -> tuple[np.ndarray, int]:
  """Direct flows of `pairs` int [D, 2], float16 [D, H, W, 2], resuming from cache_dir (if set).

  Pairs are computed `chunk` at a time in the backend's order (`backend.schedule`; batched
  backends compute each chunk at once). For cacheable backends every chunk is saved (atomically,
  with the backend's `cache_arrays`) as soon as it is done; chunks already saved under the same
  `cache_key` are loaded instead of recomputed.

  Returns:
    (flows, number of flows loaded from the cache).
  """
  height, width = backend.size
  flows = np.empty((len(pairs), height, width, 2), np.float16)
  use_cache = backend.cacheable and cache_dir is not None
  if use_cache:
    _open_cache(cache_dir, cache_key)
  order = backend.schedule(pairs)
  num_cached = 0
  with progress.bar(total=len(pairs), desc=f'flow ({backend.name})', unit='pair') as bar:
    for c, start in enumerate(range(0, len(pairs), chunk)):
      rows = order[start:start + chunk]
      block = pairs[rows]
      path = cache_dir / f'flows_{c:05d}.npz' if use_cache else None
      cached = _load_chunk(path, block, (len(block), height, width, 2)) if use_cache else None
      if cached is not None and backend.restore(block, cached):
        flows[rows] = cached['flows']
        num_cached += len(block)
        bar.update(len(block))
        continue
      flows[rows] = backend.flows(block, bar.update)
      if use_cache:
        fileio.write_npz_atomic(path, {'pairs': block, 'flows': flows[rows],
                                       **backend.cache_arrays(block)})
  return flows, num_cached


def _open_cache(cache_dir: Path, cache_key: str) -> None:
  """Makes cache_dir hold chunks for cache_key only (a different key empties it)."""
  key_path = cache_dir / 'key.json'
  if key_path.is_file() and key_path.read_text() == cache_key:
    return
  if cache_dir.is_dir():
    for path in cache_dir.glob('flows_*.npz'):
      path.unlink()
  cache_dir.mkdir(parents=True, exist_ok=True)
  fileio.write_text_atomic(key_path, cache_key)


def _load_chunk(path: Path, block: np.ndarray, shape: tuple[int, ...]) -> dict | None:
  """A cached chunk's arrays if it exists and holds exactly `block`'s pairs with flows of
  `shape`, else None."""
  if not path.is_file():
    return None
  try:
    with np.load(path, allow_pickle=False) as npz:
      if not np.array_equal(npz['pairs'], block) or npz['flows'].shape != shape:
        return None
      return {name: npz[name] for name in npz.files}
  except Exception:  # A truncated chunk (e.g. disk full) is recomputed.
    return None


def load_features(features_dir, frame_indices: np.ndarray, stems: list[str] | None
                  ) -> np.ndarray:
  """Per-frame features float32 [N, h, w, C] from {index:05d}.npy or {stem}.npy files."""
  features_dir = Path(features_dir)
  if not features_dir.is_dir():
    raise UserInputError(f'{features_dir}: features folder not found; pass a folder with one '
                         '[h, w, C] .npy per frame, or none.')
  out = []
  for n, index in enumerate(frame_indices):
    names = [f'{int(index):05d}.npy'] + ([f'{stems[n]}.npy'] if stems else [])
    path = next((features_dir / name for name in names if (features_dir / name).is_file()), None)
    if path is None:
      raise UserInputError(f'{features_dir / names[-1]}: missing features for frame {index}; '
                           'add one [h, w, C] .npy per frame (or drop features_dir).')
    array = np.load(path, allow_pickle=False)
    if array.ndim != 3 or (out and array.shape != out[0].shape):
      raise UserInputError(f'{path}: features have shape {array.shape}; expected [h, w, C], the '
                           'same for every frame.')
    out.append(array.astype(np.float32))
  return np.stack(out)


def _frame_stems(frames_path: Path, frame_indices: np.ndarray) -> list[str] | None:
  """File stems of the kept frames when the input is a folder of frames, else None."""
  if not frames_path.is_dir():
    return None
  files = video_lib.list_frame_files(frames_path)
  return [files[int(k)].stem for k in frame_indices]


def _fingerprint(paths, cfg_hash: str, exclude: Path) -> str:
  """Hash of the config and of every input file's path, size and mtime (cheap, no decoding)."""
  digest = hashlib.sha256(cfg_hash.encode())
  exclude = Path(exclude).resolve()
  for path in paths:
    if path is None:
      digest.update(b'<none>')
      continue
    path = Path(path).resolve()
    files = [path] if path.is_file() else sorted(p for p in path.rglob('*') if p.is_file())
    for file in files:
      if exclude in file.parents:
        continue
      stat = file.stat()
      digest.update(f'{file}:{stat.st_size}:{stat.st_mtime_ns};'.encode())
  return digest.hexdigest()[:16]


def _hash_array(array: np.ndarray) -> str:
  return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]


def _valid_fraction_per_gap(pairs: np.ndarray, pair_counts: np.ndarray, pixels: int) -> dict:
  gaps = np.abs(pairs[:, 1] - pairs[:, 0])
  return {int(g): round(float(pair_counts[gaps == g].mean()) / pixels, 4)
          for g in np.unique(gaps)}
