"""Correspondence filtering and chaining (numpy): which flow vectors are reliable supervision.

Conventions: a flow is float [H, W, 2] (dx, dy) px, so pixel p = (x, y) of frame i maps to
p + f_ij(p) in frame j; integer coordinates are pixel centres and x is the column. All sampling is
bilinear with the reference's grid_sample(align_corners=True) convention: the value at an integer
(x, y) is that pixel's value, and every bilinear corner outside the image contributes zero.

For an ordered pair (i, j) the filters produce two disjoint boolean masks over frame i's pixels:
  * cycle (R): reliable and co-visible. The forward-backward error
      e_fb(p) = |f_ij(p) + f_ji(p + f_ij(p))|
    is below `cycle_threshold`; for frame gaps >= `feature_check_min_gap`, when per-frame features
    are given, the features at p (frame i) and p + f_ij(p) (frame j) must also have cosine
    similarity above `feature_similarity_threshold`.
  * occluded (G): reliable but occluded in j (gaps 1..`occlusion_max_gap` only). The cycle fails
    (e_fb > `occlusion_cycle_threshold`) but the flow is consistent: with q = p + f_ij(p) +
    f_ji(p + f_ij(p)) (back in frame i), the second cycle i->j->i->j lands within
    `occlusion_return_threshold` of p + f_ij(p), and p + f_ij(p) lies inside frame j.

`chain_flows` then extends reliable correspondences to long gaps by composing adjacent flows
(reference `preprocessing/chain_raft.py`), with an RGB (and optional feature) consistency check
at every step.
"""

from typing import NamedTuple

import numpy as np

from omnimotion_jax import progress

# chain_flows(single_witness=...): which one-witness correspondences are kept.
SINGLE_WITNESS = ('none', 'direct', 'chain', 'both')
# Added to feature norms before dividing (cosine similarity of all-zero features is 0).
FEATURE_NORM_EPS = 1e-8


# --- Sampling ---

def pixel_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
  """Pixel-centre coordinates x, y: float32 [H, W] each (x = column index, y = row index)."""
  y, x = np.mgrid[0:height, 0:width].astype(np.float32)
  return x, y


def in_frame(xy: np.ndarray, height: int, width: int) -> np.ndarray:
  """bool [...]: (x, y) [..., 2] px (numpy or jax) lies within [0, W-1] x [0, H-1] (centres)."""
  x, y = xy[..., 0], xy[..., 1]
  return (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)


class _Taps(NamedTuple):
  """The 4 bilinear neighbours of a set of points: 4 arrays [...] per field."""
  index: list[np.ndarray]  # int64 flat pixel index (clamped into the image; see inside).
  weight: list[np.ndarray]  # float bilinear weight, zero for neighbours outside the image.
  needed: list[np.ndarray]  # bool, the raw weight is nonzero (whether inside or not).
  inside: list[np.ndarray]  # bool, the neighbour is a pixel of the image.


def _taps(x, y, height, width, frame=None, dtype=np.float32) -> _Taps:
  """Bilinear neighbours of (x, y) px in an [H, W] image (or slice `frame` of a stack)."""
  # Far-away points are clipped to just outside the image (keeps int casts safe; weights stay 0).
  x, y = np.clip(x, -2.0, width + 1.0), np.clip(y, -2.0, height + 1.0)
  x0, y0 = np.floor(x), np.floor(y)
  fx, fy = (x - x0).astype(dtype), (y - y0).astype(dtype)
  x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
  base = 0 if frame is None else np.asarray(frame, np.int64) * (height * width)
  xs, ys = (x0, x0 + 1), (y0, y0 + 1)
  wx, wy = (1 - fx, fx), (1 - fy, fy)
  in_x = [(v >= 0) & (v < width) for v in xs]
  in_y = [(v >= 0) & (v < height) for v in ys]
  cx = [np.clip(v, 0, width - 1) for v in xs]
  rows = [base + np.clip(v, 0, height - 1) * width for v in ys]
  taps = []
  for a in (0, 1):
    for b in (0, 1):
      raw, ok = wy[a] * wx[b], in_y[a] & in_x[b]
      taps.append((rows[a] + cx[b], np.where(ok, raw, 0), raw > 0, ok))
  return _Taps(*map(list, zip(*taps)))


def _gather(flat: np.ndarray, taps: _Taps) -> np.ndarray:
  """Bilinear interpolation of flat [M, C] rows at the taps: [..., C] in flat's dtype."""
  out = flat.take(taps.index[0], axis=0) * taps.weight[0][..., None]
  for t in range(1, 4):
    out += flat.take(taps.index[t], axis=0) * taps.weight[t][..., None]
  return out


def _all_set(flat: np.ndarray, taps: _Taps) -> np.ndarray:
  """True where every neighbour with a nonzero raw weight is inside and set in bool flat [M]."""
  ok = ~taps.needed[0] | (taps.inside[0] & flat.take(taps.index[0]))
  for t in range(1, 4):
    ok &= ~taps.needed[t] | (taps.inside[t] & flat.take(taps.index[t]))
  return ok


def bilinear_sample(image: np.ndarray, x: np.ndarray, y: np.ndarray,
                    frame: np.ndarray | int | None = None, dtype=np.float32) -> np.ndarray:
  """Samples an image bilinearly at (x, y) px, zeros outside (grid_sample, align_corners=True).

  Args:
    image: [H, W, C] or a stack [N, H, W, C] (then `frame` picks the slice per point).
    x, y: float [...] px; integer values are pixel centres.
    frame: int, or int array broadcastable to x, index into the stack's first axis.
    dtype: of the weights, the arithmetic and the result (float64 for exact ground truth).

  Returns:
    dtype [..., C].
  """
  height, width, channels = image.shape[-3:]
  flat = image.reshape(-1, channels).astype(dtype, copy=False)
  return _gather(flat, _taps(x, y, height, width, frame, dtype))


def sample_mask_all(mask: np.ndarray, x: np.ndarray, y: np.ndarray,
                    frame: np.ndarray | int | None = None) -> np.ndarray:
  """True where every bilinear neighbour of (x, y) with a nonzero weight is inside and set.

  This is what the reference's `bilinear(mask)(c) == 1` means, without its float round-off (a
  weighted sum of ones need not be exactly 1.0 in float32).

  Args:
    mask: bool [H, W] or a stack [N, H, W].
    x, y: float [...] px.
    frame: as in `bilinear_sample`.

  Returns:
    bool [...].
  """
  height, width = mask.shape[-2:]
  return _all_set(mask.reshape(-1), _taps(x, y, height, width, frame))


def feature_grid_coords(x: np.ndarray, y: np.ndarray, image_size: tuple[int, int],
                        feature_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
  """Maps image px to feature-grid px so that both grids' corner centres coincide.

  align_corners=True at both resolutions: x_f = x (w - 1) / (W - 1). (The reference's filter uses
  this; its chaining step upsampled with align_corners=False instead; we use one convention.)
  """
  (height, width), (fh, fw) = image_size, feature_size
  sx, sy = (fw - 1) / max(width - 1, 1), (fh - 1) / max(height - 1, 1)
  return x * np.float32(sx), y * np.float32(sy)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Cosine similarity along the last axis: [..., C] x [..., C] -> [...]."""
  dot = np.einsum('...c,...c->...', a, b)
  norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
  return dot / (norms + FEATURE_NORM_EPS)


def features_at_grid(features: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
  """A frame's features [h, w, C] sampled at every image pixel centre: float32 [H, W, C]."""
  x, y = pixel_grid(*image_size)
  fx, fy = feature_grid_coords(x, y, image_size, features.shape[:2])
  return bilinear_sample(features, fx, fy)


# --- Per-pair filters ---

def forward_backward_masks(flow_ij: np.ndarray, flow_ji: np.ndarray, *, cycle_threshold: float,
                           with_occlusion: bool = False, occlusion_cycle_threshold: float = np.inf,
                           occlusion_return_threshold: float = 0.0
                           ) -> tuple[np.ndarray, np.ndarray]:
  """Cycle (R) and occluded-but-reliable (G) masks of one ordered pair (module docstring).

  Args:
    flow_ij: float [H, W, 2] (dx, dy) px, frame i -> j.
    flow_ji: float [H, W, 2] (dx, dy) px, frame j -> i.
    cycle_threshold: R holds where the forward-backward error is below this (px).
    with_occlusion: compute G (else it is all False).
    occlusion_cycle_threshold: G needs a forward-backward error above this (px).
    occlusion_return_threshold: G needs the second cycle i->j->i->j to land within this (px).

  Returns:
    (cycle, occluded): bool [H, W] each, disjoint.
  """
  height, width = flow_ij.shape[:2]
  flow_ij = flow_ij.astype(np.float32, copy=False)
  x, y = pixel_grid(height, width)
  tx, ty = x + flow_ij[..., 0], y + flow_ij[..., 1]
  back = bilinear_sample(flow_ji, tx, ty)
  fb_error = np.linalg.norm(flow_ij + back, axis=-1)
  # Like the reference, a target outside frame j samples f_ji = 0; a tiny flow leaving the image
  # therefore passes. Kept: such a flow is usually right, and the loss masks predictions outside.
  cycle = fb_error < cycle_threshold
  if not with_occlusion:
    return cycle, np.zeros_like(cycle)
  qx, qy = tx + back[..., 0], ty + back[..., 1]
  again = bilinear_sample(flow_ij, qx, qy)
  return_error = np.hypot(qx + again[..., 0] - tx, qy + again[..., 1] - ty)
  occluded = ((return_error < occlusion_return_threshold) & (fb_error > occlusion_cycle_threshold)
              & in_frame(np.stack([tx, ty], -1), height, width))
  # Disjoint by construction only if occlusion_cycle_threshold >= cycle_threshold; enforce it.
  return cycle, occluded & ~cycle


def filter_pair(flow_ij: np.ndarray, flow_ji: np.ndarray, gap: int, *, cycle_threshold: float,
                occlusion_cycle_threshold: float, occlusion_return_threshold: float,
                occlusion_max_gap: int, features_i: np.ndarray | None = None,
                features_j: np.ndarray | None = None, feature_similarity_threshold: float = 0.5,
                feature_check_min_gap: int = 3) -> tuple[np.ndarray, np.ndarray]:
  """The reference's filter for one ordered pair (i, j) with frame gap |i - j| = gap.

  Args:
    flow_ij, flow_ji: float [H, W, 2] (dx, dy) px.
    gap: |i - j| >= 1 (frames).
    cycle_threshold: px; R = forward-backward error below it.
    occlusion_cycle_threshold, occlusion_return_threshold: px; see `forward_backward_masks`.
    occlusion_max_gap: G is computed only for gaps 1..occlusion_max_gap (frames).
    features_i, features_j: optional per-frame features [h, w, C] (any grid size, e.g. ViT
      patches), sampled with `feature_grid_coords`.
    feature_similarity_threshold: R also needs cosine similarity above this, for gaps >=
      feature_check_min_gap, when features are given.

  Returns:
    (cycle, occluded): bool [H, W], disjoint.
  """
  cycle, occluded = forward_backward_masks(
      flow_ij, flow_ji, cycle_threshold=cycle_threshold,
      with_occlusion=1 <= gap <= occlusion_max_gap,
      occlusion_cycle_threshold=occlusion_cycle_threshold,
      occlusion_return_threshold=occlusion_return_threshold)
  if features_i is not None and features_j is not None and gap >= feature_check_min_gap:
    height, width = flow_ij.shape[:2]
    x, y = pixel_grid(height, width)
    fx, fy = feature_grid_coords(x + flow_ij[..., 0], y + flow_ij[..., 1], (height, width),
                                 features_j.shape[:2])
    similarity = cosine_similarity(features_at_grid(features_i, (height, width)),
                                   bilinear_sample(features_j, fx, fy))
    cycle &= similarity > feature_similarity_threshold
  return cycle, occluded


# --- Chaining ---

def pair_lookup(pairs: np.ndarray) -> dict[tuple[int, int], int]:
  """{(i, j): row} for int [P, 2] ordered pairs."""
  return {(int(i), int(j)): k for k, (i, j) in enumerate(pairs)}


def chain_flows(pairs: np.ndarray, flows: np.ndarray, cycle: np.ndarray, occluded: np.ndarray,
                frames: np.ndarray, *, rgb_threshold: float, features: np.ndarray | None = None,
                feature_similarity_threshold: float = 0.5, has_direct: np.ndarray | None = None,
                direct_agreement_px: float = 0.0, require_agreement: bool = False,
                agreement_px_per_frame: float = 0.0, single_witness: str = 'none',
                out_dtype=np.float16) -> tuple[np.ndarray, np.ndarray]:
  """Augments every pair's flow with chained adjacent flows (reference chain_raft, sec. 1.6).

  For a start frame i and direction d = +-1, the chain keeps an accumulated flow A and mask M,
  starting from A = f_{i,i+d} and M = R_{i,i+d}. At each frame j = i+d, i+2d, ... :
    1. where the direct pair (i, j) is reliable (R or G), A takes its flow;
    2. c = p + A(p); M &= |rgb_i(p) - rgb_j(c)| < rgb_threshold (RGB in [0, 1]) and, with
       features, cos(F_i(p), F_j(c)) > feature_similarity_threshold;
    3. M |= direct R, M &= ~direct G; if (i, j) is one of `pairs`, A and M are its outputs;
    4. A += f_{j,j+d}(c) and M &= (every bilinear neighbour of c is in R_{j,j+d}).
  With direct_agreement_px > 0 (not in the reference), step 1 skips, at pixels where the chain is
  still valid, a direct flow that lands more than direct_agreement_px from the chain's point:
  those pixels keep the chain (and the direct R/G masks do not apply to them in step 3). Without
  feature checks, a direct long-gap flow can be wrong in both directions at once (a small fast
  object matched to the background), so the cycle test alone passes it.
  With require_agreement (not in the reference; needs direct_agreement_px > 0), a listed pair's
  output is valid only where two independent witnesses agree: the direct flow passes its cycle
  test (R), the chain is still valid, and the two land within direct_agreement_px; its flow is
  then the direct one (no drift). Everything else is dropped, in particular where only one of
  them is valid or they disagree. On TAP-Vid-DAVIS with DIS, agreeing pairs are 0.5-0.9 px from
  the ground truth with 1-2 % of them more than 8 px off; each witness alone is 28-57 % that far
  off where they disagree (benchmarks/QUALITY.md). The chain itself continues unchanged (its
  position snaps to the direct flow where they agree), so it stays independent of later direct
  flows.
  agreement_px_per_frame (not in the reference): the agreement radius grows by this many px per
  frame of gap beyond 1 (the chain drifts with every step it takes, so a fixed radius rejects
  correct direct flows at long gaps).
  single_witness (with require_agreement; not in the reference): which correspondences that only
  one witness vouches for are kept as well: 'none' (the strict intersection), 'direct' (the
  direct flow passes its cycle test where the chain is no longer valid), 'chain' (the chain is
  valid where the direct flow fails its cycle test), or 'both' (a union: everything except
  points where both witnesses are valid and disagree).
  The chain from i runs only as far as the farthest listed pair from i in that direction.
  Gap-1 pairs come out unchanged (A = f, M = R). G masks are not changed (use the input ones).
  Unlike the reference, this writes new arrays and never modifies its inputs (the reference
  overwrote raft_exhaustive/raft_masks in place, so running it twice changed the result).

  Args:
    pairs: int [P, 2] ordered pairs (i, j), which must include every adjacent pair (i, i+-1).
    flows: float [P, H, W, 2] (dx, dy) px, the direct flow of each pair (ignored where
      has_direct is False).
    cycle, occluded: bool [P, H, W], the direct R and G masks (from `filter_pair`).
    frames: uint8 [N, H, W, 3] RGB.
    rgb_threshold: L2 distance over RGB in [0, 1].
    features: optional float [N, h, w, C] per-frame features.
    feature_similarity_threshold: minimum cosine similarity (used only with features).
    has_direct: optional bool [P]; False marks a pair whose flow is chained only (its flows,
      cycle and occluded rows are ignored). Gap-1 pairs must have direct flow. Default all True.
    direct_agreement_px: see above; 0 = off (the reference's behaviour).
    require_agreement: see above; False = off (the reference's behaviour).
    out_dtype: dtype of the returned flows (float16 is the store's).

  Returns:
    (flows_out [P, H, W, 2] out_dtype, cycle_out bool [P, H, W]), new arrays.
  """
  pairs = np.asarray(pairs)
  num_frames, height, width = frames.shape[:3]
  if require_agreement and direct_agreement_px <= 0:
    raise ValueError('require_agreement needs direct_agreement_px > 0 (the agreement radius).')
  if single_witness not in SINGLE_WITNESS:
    raise ValueError(f'single_witness={single_witness!r}: use one of {SINGLE_WITNESS}.')
  keep_direct = single_witness in ('direct', 'both')
  keep_chain = single_witness in ('chain', 'both')
  lookup = pair_lookup(pairs)
  has_direct = np.ones(len(pairs), bool) if has_direct is None else np.asarray(has_direct, bool)
  for i in range(num_frames - 1):
    for a, b in ((i, i + 1), (i + 1, i)):
      if (a, b) not in lookup or not has_direct[lookup[(a, b)]]:
        raise ValueError(f'chain_flows needs the direct adjacent pair ({a}, {b}).')
  flows_out, cycle_out = np.empty(flows.shape, out_dtype), np.empty(cycle.shape, bool)
  # Gap-1 pairs: the chain would reproduce them exactly; copy.
  for k in np.nonzero(np.abs(pairs[:, 0] - pairs[:, 1]) == 1)[0]:
    flows_out[k], cycle_out[k] = flows[k], cycle[k]

  x, y = pixel_grid(height, width)
  rgb = frames.astype(np.float32) / np.float32(255)

  def run_chain(i, last, step, stack_flat, next_flat):
    """Runs the chain from frame i to frame `last` and writes the listed pairs' outputs."""
    k0 = lookup[(i, i + step)]
    acc = flows[k0].astype(np.float32)  # A, float32 [H, W, 2]
    mask = cycle[k0].copy()  # M
    source_features = None if features is None else features_at_grid(features[i], (height, width))
    for j in range(i + step, last + step, step):
      k = lookup.get((i, j), -1)
      direct = k >= 0 and has_direct[k]
      radius = direct_agreement_px + agreement_px_per_frame * (abs(j - i) - 1)
      if direct and require_agreement:
        direct_flow = flows[k].astype(np.float32)
        chain_flow = acc
        close = np.linalg.norm(direct_flow - acc, axis=-1) <= radius
        witnessed = cycle[k] & close
        acc = np.where(witnessed[..., None], direct_flow, acc)
      elif direct:
        use = cycle[k] | occluded[k]
        if direct_agreement_px > 0:
          apart = np.linalg.norm(flows[k].astype(np.float32) - acc, axis=-1) > radius
          use &= ~(mask & apart)
        acc = np.where(use[..., None], flows[k].astype(np.float32), acc)
      cx, cy = x + acc[..., 0], y + acc[..., 1]
      taps = _taps(cx, cy, height, width, frame=j)
      sampled = _gather(stack_flat, taps)  # [H, W, 5]
      diff = rgb[i] - sampled[..., :3]
      mask &= np.einsum('...c,...c->...', diff, diff) < np.float32(rgb_threshold) ** 2
      if features is not None:
        fx, fy = feature_grid_coords(cx, cy, (height, width), features.shape[1:3])
        target_features = bilinear_sample(features, fx, fy, frame=j)
        mask &= cosine_similarity(source_features, target_features) > feature_similarity_threshold
      if direct and not require_agreement:
        mask |= cycle[k] & use
        mask &= ~(occluded[k] & use)
      if k >= 0 and direct and require_agreement:
        # mask: the chain is still valid at its own position (witnessed points snapped to the
        # direct flow, within the radius).
        valid = mask & witnessed
        out = acc
        if keep_direct:
          alone = cycle[k] & ~mask
          valid |= alone
          out = np.where(alone[..., None], direct_flow, out)
        if keep_chain:
          alone = mask & ~cycle[k]
          valid |= alone
          out = np.where(alone[..., None], chain_flow, out)
        flows_out[k], cycle_out[k] = out, valid
      elif k >= 0:
        flows_out[k], cycle_out[k] = acc, mask
      if j != last:
        acc = acc + sampled[..., 3:]
        mask &= _all_set(next_flat, taps)

  # Chains to run: (direction, start, last frame), one per start with a listed pair of gap >= 2.
  chains = []
  for step in (1, -1):
    for i in range(num_frames):
      targets = [j for j in range(num_frames) if (i, j) in lookup and (j - i) * step >= 2]
      if targets:
        chains.append((step, i, max(targets) if step > 0 else min(targets)))
  with progress.bar(total=sum(abs(last - i) for _, i, last in chains), desc='chain',
                    unit='step') as bar:
    for step in (1, -1):
      # Per frame j: [rgb_j (3), f_{j,j+step} (2)]: one gather serves the check and the extension.
      stack = np.zeros((num_frames, height, width, 5), np.float32)
      stack[..., :3] = rgb
      next_cycle = np.zeros((num_frames, height, width), bool)
      for j in range(num_frames):
        if 0 <= j + step < num_frames:
          k = lookup[(j, j + step)]
          stack[j, ..., 3:] = flows[k]
          next_cycle[j] = cycle[k]
      for direction, i, last in chains:
        if direction == step:
          run_chain(i, last, step, stack.reshape(-1, 5), next_cycle.reshape(-1))
          bar.update(abs(last - i))
  return flows_out, cycle_out


# --- Counts ---

def count_maps(pairs: np.ndarray, valid: np.ndarray, num_frames: int
               ) -> tuple[np.ndarray, np.ndarray]:
  """Per-pixel and per-pair counts of valid correspondences.

  Args:
    pairs: int [P, 2] ordered pairs (i, j).
    valid: bool [P, H, W], reliable pixels of frame i for each pair (R or G).
    num_frames: N.

  Returns:
    counts: uint16 [N, H, W], for each pixel of frame i the number of pairs (i, .) where it is
      valid (the reference's count_maps).
    pair_counts: int32 [P], valid pixels per pair (the reference's flow_stats).
  """
  # Computed from scratch from the final masks: re-running never accumulates (the reference
  # updated count_maps / flow_stats files in place).
  counts = np.zeros((num_frames, *valid.shape[1:]), np.int32)
  for k, (i, _) in enumerate(pairs):
    counts[i] += valid[k]
  pair_counts = valid.reshape(len(pairs), -1).sum(axis=1).astype(np.int32)
  return counts.astype(np.uint16), pair_counts
