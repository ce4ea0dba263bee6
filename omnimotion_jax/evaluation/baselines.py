"""Flow-only point trackers: the baselines OmniMotion's optimised tracks are compared against.

Both trackers use the same kind of input correspondences as OmniMotion (dense optical flow with a
forward-backward check), so a TAP-Vid comparison isolates what the optimisation adds:

  * `chained_flow_tracks`: integrates the stored *adjacent* flows of a SequenceData from each
    query frame forwards to the last frame and backwards to frame 0 (drift accumulates).
  * `direct_flow_tracks`: one flow computation per (query frame, target frame) pair, no chaining
    (no drift, but large displacements and appearance changes are hard for the flow method).

Conventions (TAP-Vid, as everywhere in omnimotion_jax): queries are float [Q, 3] (t, y, x) with an
integer-valued frame index t; tracks are float32 [Q, T, 2] (x, y) px and occlusion is bool [Q, T];
integer coordinates are pixel centres and x is the column. A flow is float [H, W, 2] (dx, dy) px:
pixel p of frame i corresponds to p + f_ij(p) in frame j. Flows are sampled bilinearly.

"Inside the frame" means inside the hull of pixel centres, [0, W - 1] x [0, H - 1], the region
where bilinear sampling is defined (and the synthetic ground truth's definition of visible).

Occlusion rules:

  chained (per query, for each step s -> s' = s +- 1 away from the query frame):
    1. p_{s'} = p_s + f_{s,s'}(clip(p_s)), where clip() moves p_s onto the nearest point inside
       the frame (so a point that left the frame keeps moving with the flow at the border and
       can re-enter, instead of freezing on zero-padded flow).
    2. The step is *broken* if p_s is outside the frame, or its forward-backward check fails:
         - cycle_threshold given (float): the error e = |f_{s,s'}(p_s) + f_{s',s}(p_{s'})|,
           recomputed at the sub-pixel position with the two stored adjacent flows, is not below
           cycle_threshold (the store's own R test, evaluated at p_s instead of a pixel centre;
           at pixel centres it equals the stored cycle mask when the thresholds match);
         - cycle_threshold None: the bilinear sample of the stored cycle mask of pair (s, s')
           at p_s is below 0.5 (the exact R masks OmniMotion is supervised with).
    3. occluded[s'] = (p_{s'} outside the frame) or (step s -> s' broken). The rule is not
       sticky: the position keeps being chained after a break, and the point is visible again
       at the next frame whose incoming step passes.
    At the query frame: the query itself, visible.

  direct (per query with frame q, for each frame j != q):
    position = p + f_qj(p); occluded[j] = position outside the frame, or the forward-backward
    error |f_qj(p) + f_jq(p + f_qj(p))| is not below cycle_threshold. At q: the query, visible.
"""

from collections.abc import Callable

import numpy as np

from omnimotion_jax import progress
from omnimotion_jax.data import filtering
from omnimotion_jax.data import flow as flow_lib
from omnimotion_jax.data import store as store_lib
from omnimotion_jax.data.store import SequenceData

# A flow function: (frame_a, frame_b) uint8 [H, W, 3] -> float32 [H, W, 2] (dx, dy) px, a -> b.
FlowFn = Callable[[np.ndarray, np.ndarray], np.ndarray]

# With cycle_threshold=None, a step passes where the bilinear sample of the stored cycle mask is
# at least this (a mask bilinearly interpolated between set and unset pixels).
MASK_PASS = 0.5


# --- helpers ----------------------------------------------------------------------------------

def _start_tracks(queries, num_frames: int):
  """(t, y, x) queries [Q, 3] -> (frames, xy, tracks, occluded), the start of a tracker's output.

  frames: int64 [Q] (rounded); xy: float64 [Q, 2] (x, y) px; tracks: float64 [Q, T, 2], each
  query at its frame and 0 elsewhere; occluded: bool [Q, T], all False.

  Raises:
    ValueError: queries are not [Q, 3], or a frame lies outside [0, T).
  """
  queries = np.asarray(queries, np.float64)
  if queries.ndim != 2 or queries.shape[1] != 3:
    raise ValueError(f'queries must be [Q, 3] (t, y, x); got shape {queries.shape}.')
  t = np.round(queries[:, 0]).astype(np.int64)
  if t.size and (t.min() < 0 or t.max() >= num_frames):
    raise ValueError(f'query frames must lie in [0, {num_frames}); got {t.min()}..{t.max()}.')
  xy = queries[:, [2, 1]]
  tracks = np.zeros((len(t), num_frames, 2), np.float64)
  tracks[np.arange(len(t)), t] = xy
  return t, xy, tracks, np.zeros((len(t), num_frames), bool)


def _clip(xy: np.ndarray, height: int, width: int) -> np.ndarray:
  """(x, y) [..., 2] moved onto the nearest point inside the frame."""
  return np.stack([np.clip(xy[..., 0], 0, width - 1), np.clip(xy[..., 1], 0, height - 1)], -1)


def _sample(image: np.ndarray, xy: np.ndarray) -> np.ndarray:
  """Bilinear sample of image [H, W, C] at (x, y) [Q, 2] -> float32 [Q, C] (zeros outside)."""
  return filtering.bilinear_sample(image, xy[:, 0], xy[:, 1])


# --- chained adjacent flow --------------------------------------------------------------------

def _adjacent_row(seq: SequenceData, i: int, j: int) -> int:
  row = int(np.asarray(seq.pair_index)[i, j])
  if row < 0:
    raise ValueError(f'chained_flow_tracks needs the stored adjacent pair ({i}, {j}); the store '
                     'has every adjacent pair in both directions unless it was built by hand.')
  return row


def _chain_step(seq: SequenceData, s: int, s_next: int, xy: np.ndarray,
                cycle_threshold: float | None) -> tuple[np.ndarray, np.ndarray]:
  """One step s -> s_next for positions xy [Q, 2] in frame s: (new xy [Q, 2], broken [Q])."""
  height, width = seq.size
  row = _adjacent_row(seq, s, s_next)
  flow = np.asarray(seq.flows[row])
  forward = _sample(flow, _clip(xy, height, width))
  new_xy = xy + forward
  broken = ~filtering.in_frame(xy, height, width)
  if cycle_threshold is None:
    mask = np.asarray(seq.cycle[row], np.float32)[..., None]
    broken |= _sample(mask, xy)[:, 0] < MASK_PASS
  else:
    back_flow = np.asarray(seq.flows[_adjacent_row(seq, s_next, s)])
    # Zero-padded backward flow outside frame s_next, as in filtering.forward_backward_masks.
    error = np.linalg.norm(forward + _sample(back_flow, new_xy), axis=-1)
    broken |= ~(error < cycle_threshold)  # NaN-safe: a NaN error counts as broken.
  return new_xy, broken


def chained_flow_tracks(seq: SequenceData, queries: np.ndarray, *,
                        cycle_threshold: float | None) -> tuple[np.ndarray, np.ndarray]:
  """Tracks queries by integrating the stored adjacent flows (module docstring for the rules).

  Vectorised over queries: one pass forwards over frames 0..T-1 and one backwards, each query
  being active in the part of the pass on its side of its query frame.

  Args:
    seq: a SequenceData (numpy or jax arrays) storing every adjacent pair (s, s+1) and (s+1, s).
    queries: float [Q, 3] (t, y, x); t an integer-valued frame index, (x, y) px.
    cycle_threshold: forward-backward error threshold (px) recomputed at the sub-pixel position;
      None uses the stored cycle masks instead.

  Returns:
    tracks: float32 [Q, T, 2] (x, y) px.
    occluded: bool [Q, T].
  """
  num_frames = seq.num_frames
  height, width = seq.size
  query_t, query_xy, tracks, occluded = _start_tracks(queries, num_frames)
  for step in (1, -1):
    frames = range(num_frames - 1) if step > 0 else range(num_frames - 1, 0, -1)
    xy = query_xy.copy()
    for s in frames:
      # Queries already on their chain at frame s (their query frame is s or behind it).
      active = query_t <= s if step > 0 else query_t >= s
      if not active.any():
        continue
      xy = np.where((query_t == s)[:, None], query_xy, xy)
      new_xy, broken = _chain_step(seq, s, s + step, xy[active], cycle_threshold)
      tracks[active, s + step] = new_xy
      occluded[active, s + step] = broken | ~filtering.in_frame(new_xy, height, width)
      xy[active] = new_xy
  return tracks.astype(np.float32), occluded


def adjacent_store(frames: np.ndarray, flow_fn: FlowFn, *, cycle_threshold: float
                   ) -> SequenceData:
  """A SequenceData holding only the adjacent pairs (i, i+-1), with flows computed on `frames`.

  For the chained baseline at a resolution other than the model's store (the input video's
  own, when the model runs on downscaled frames). Flows are rounded to float16 like a store's;
  cycle masks use `filtering.forward_backward_masks`; occluded masks and counts are empty.

  Args:
    frames: uint8 [N, H, W, 3] RGB.
    flow_fn: (frame_a, frame_b) -> float [H, W, 2] flow a -> b.
    cycle_threshold: px, for the stored cycle masks.
  """
  frames = np.asarray(frames)
  num_frames, height, width = frames.shape[:3]
  pairs = np.array([(i, i + d) for i in range(num_frames) for d in (-1, 1)
                    if 0 <= i + d < num_frames], np.int32).reshape(-1, 2)
  flows = np.stack([flow_fn(frames[i], frames[j]) for i, j in progress.bar(
      pairs, desc='adjacent flow', unit='pair')]).astype(np.float16)
  index = store_lib.make_pair_index(pairs, num_frames)
  cycle = np.stack([filtering.forward_backward_masks(
      flows[k].astype(np.float32), flows[index[j, i]].astype(np.float32),
      cycle_threshold=cycle_threshold)[0] for k, (i, j) in enumerate(pairs)])
  return SequenceData(
      frames=frames, frame_indices=np.arange(num_frames, dtype=np.int32), pairs=pairs,
      flows=flows, cycle=cycle, occluded=np.zeros_like(cycle),
      counts=np.zeros((num_frames, height, width), np.uint16),
      pair_counts=cycle.reshape(len(pairs), -1).sum(1).astype(np.int32), pair_index=index,
      meta_json='{}')


# --- direct pairwise flow ---------------------------------------------------------------------

def dis_flow_fn(preset: str = 'medium') -> FlowFn:
  """A FlowFn computing OpenCV DIS flow on greyscale frames (flow.pair_flow_fn('dis', preset))."""
  return flow_lib.pair_flow_fn('dis', preset)


def baseline_flow_fn(data_cfg) -> FlowFn:
  """The direct baseline's FlowFn: the run's own flow method if it computes one (DIS or
  DeepFlow), else DIS (for flows read from files)."""
  method = data_cfg.flow_backend
  return flow_lib.pair_flow_fn(method if method in flow_lib.COMPUTED_BACKENDS else 'dis',
                               data_cfg.dis_preset)


def direct_flow_tracks(frames: np.ndarray, queries: np.ndarray, flow_fn: FlowFn, *,
                       cycle_threshold: float) -> tuple[np.ndarray, np.ndarray]:
  """Tracks queries with one direct flow from the query frame to every other frame.

  For each distinct query frame q and each frame j != q, computes f_qj = flow_fn(frame_q,
  frame_j) and f_jq = flow_fn(frame_j, frame_q) once, shared by all queries of frame q. Flows
  between two query frames are cached (they serve both frames' queries); the rest are dropped
  after use, so memory stays at a few flows plus that cache.

  Args:
    frames: uint8 [N, H, W, 3] RGB.
    queries: float [Q, 3] (t, y, x); t an integer-valued frame index, (x, y) px.
    flow_fn: (frame_a, frame_b) -> float [H, W, 2] (dx, dy) px from a to b (e.g. dis_flow_fn()).
    cycle_threshold: px; a target is visible only where the forward-backward error is below it.

  Returns:
    tracks: float32 [Q, N, 2] (x, y) px.
    occluded: bool [Q, N].
  """
  frames = np.asarray(frames)
  num_frames, height, width = frames.shape[:3]
  query_t, query_xy, tracks, occluded = _start_tracks(queries, num_frames)
  query_frames = set(np.unique(query_t).tolist())
  cache: dict[tuple[int, int], np.ndarray] = {}

  def flow(a: int, b: int) -> np.ndarray:
    if (a, b) in cache:
      return cache[(a, b)]
    out = np.asarray(flow_fn(frames[a], frames[b]), np.float32)
    if out.shape != (height, width, 2):
      raise ValueError(f'flow_fn returned shape {out.shape}, expected {(height, width, 2)}.')
    if a in query_frames and b in query_frames:
      cache[(a, b)] = out
    return out

  for q in progress.bar(sorted(query_frames), desc='direct flow', unit='query frame'):
    members = np.nonzero(query_t == q)[0]
    xy = query_xy[members]
    for j in range(num_frames):
      if j == q:
        continue
      forward = _sample(flow(q, j), xy)
      target = xy + forward
      error = np.linalg.norm(forward + _sample(flow(j, q), target), axis=-1)
      tracks[members, j] = target
      occluded[members, j] = ~(error < cycle_threshold) | ~filtering.in_frame(target, height, width)
  return tracks.astype(np.float32), occluded
