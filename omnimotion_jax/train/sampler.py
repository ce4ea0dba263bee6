"""Sampling frame pairs and points inside the jitted train step (reference
`loaders/raft.py` and `train.py`; paper Sec. 4 on hard mining).

Everything here is jax with static shapes, driven by one PRNG key per step, and reads from the
device-resident `TrainData` built once from the sequence store. There is no Python data loader.

Per step, for each of `num_pairs` samples:
  1. a source frame i: uniform, or (with hard mining on) proportional to the frame's mapping error;
  2. a stored pair (i, j) with 1 <= |i-j| <= M, where the max gap M = min(M0 + step // grow, N-1):
     adjacent pairs share `adjacent_mass` of the probability, the others the rest in proportion
     to their valid-pixel counts;
  3. `num_points` pixels of frame i among the pair's valid pixels (all pixels for adjacent pairs,
     cycle-consistent or occluded-but-reliable ones otherwise), with probability proportional to
     1/sqrt(count + 1) (pixels with few reliable correspondences first); with hard mining on, a
     fraction of them instead proportional to the blurred error map;
  4. with probability `swap_prob` the direction is swapped: the flow target becomes the (subpixel)
     source, and only cycle-consistent points keep their weight.
Per-point weight: cos((|i-j| - 1) / M * pi / 2), zero if the pair has no valid pixel. With
`appearance_min_zncc` (not in the reference, which checks DINO features in preprocessing), also
zero where the colour patches around a long-gap correspondence's two ends do not correlate.

Padding: `TrainData.size` holds the video's own (N, H, W); the arrays may be larger (a batch of
videos padded to one shape, train/batch.py). Padded frames, pairs and pixels get zero probability,
and every draw takes uniforms whose shape does not depend on the padded sizes (inverse-CDF
sampling, not Gumbel-max over the candidates), so a padded video draws the same frames, pairs and
pixels as the unpadded one, up to the float rounding of the cumulative sums.
"""

import dataclasses

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from omnimotion_jax.data.filtering import in_frame, pair_lookup
from omnimotion_jax.model import render


@flax.struct.dataclass
class TrainData:
  """Device-resident supervision for one video (fixed shapes; P stored pairs).

  Attributes:
    frames: [N, H, W, 3] float32 colours in [0, 1].
    pairs: [P, 2] int32 (i, j): the flow maps pixels of frame i into frame j.
    flows: [P, H, W, 2] float16 (dx, dy) px.
    cycle: [P, H, W] bool, cycle-consistent (reliable and co-visible) pixels.
    occluded: [P, H, W] bool, reliable but occluded in j (gaps 1-2 only).
    counts: [N, H, W] float32, number of valid correspondences of each pixel.
    pair_counts: [P] float32, valid pixels per pair.
    adjacent_pair: [N] int32, index of pair (i, i+1) (for the last frame, (N-1, N-2)).
    size: [3] int32, the video's own (N, H, W); the arrays above may be padded beyond it
      (zeros; padded pairs are (0, 0) with no pixel). Entering as data, it lets one compiled
      step serve videos of several lengths and sizes.
    motion_labels: optional [N, H, W] float32 (priors.motion_labels): 1 where a pixel moves
      on its own, 0 where it follows the dominant motion, -1 unknown. Only for the motion-depth
      prior (train.loss.w_motion_depth); None otherwise.
  """
  frames: jax.Array
  pairs: jax.Array
  flows: jax.Array
  cycle: jax.Array
  occluded: jax.Array
  counts: jax.Array
  pair_counts: jax.Array
  adjacent_pair: jax.Array
  size: jax.Array
  motion_labels: jax.Array | None = None

  @property
  def shape(self) -> tuple[int, int, int]:
    """(N, H, W) of the arrays (padded, if they are)."""
    return self.frames.shape[:3]

  def video(self) -> render.VideoShape:
    """The video's own size, as int32 scalars (traced inside jit)."""
    return render.VideoShape(self.size[0], self.size[1], self.size[2])


def adjacent_pair_index(pairs: np.ndarray, num_frames: int) -> np.ndarray:
  """[N] index into `pairs` of (i, i+1) for each frame, and (N-1, N-2) for the last one."""
  lookup = pair_lookup(pairs)
  out = []
  for i in range(num_frames):
    target = (i, i + 1) if i < num_frames - 1 else (i, i - 1)
    if target not in lookup:
      raise ValueError(f'the pair plan lacks adjacent pair {target}; every plan must include all '
                       'adjacent pairs in both directions.')
    out.append(lookup[target])
  return np.asarray(out, np.int32)


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
  """Explicit sampling parameters (from config.train)."""
  num_pairs: int
  num_points: int
  max_gap_start: int
  max_gap_grow_every: int
  adjacent_mass: float
  swap_prob: float
  hard_mining_fraction: float
  # Appearance check of long-gap correspondences (not in the reference; None = off): a point of a
  # pair with gap >= appearance_min_gap gets zero weight where the zero-normalised
  # cross-correlation of the colour patches around its source and target is below
  # appearance_min_zncc. Patches: appearance_taps x appearance_taps samples appearance_spacing
  # px apart.
  appearance_min_zncc: float | None = None
  appearance_min_gap: int = 2
  appearance_taps: int = 5
  appearance_spacing: float = 2.0


@flax.struct.dataclass
class Batch:
  """One step's supervision: B pairs x R points.

  Attributes:
    src: [B] int32 source frame; tgt: [B] int32 target frame.
    px_src: [B, R, 2] (x, y) px in the source frame (integer centres, or subpixel if swapped).
    px_tgt: [B, R, 2] (x, y) px, the flow target in the target frame.
    rgb_src: [B, R, 3] colour of the source frame at px_src (zero outside the frame).
    weights: [B, R] per-point weight (pair-gap weight times validity).
    max_gap: [] int32, the current max gap M.
    covisible: [B, R] bool, the point passed the pair's cycle test (R mask): visible in both
      frames. Adjacent pairs supervise every pixel's flow, but only these are known co-visible.
    occluded_tgt: [B, R] bool, the point is reliable but occluded in the target frame (G mask;
      never for swapped pairs, whose source is the occluded side).
  """
  src: jax.Array
  tgt: jax.Array
  px_src: jax.Array
  px_tgt: jax.Array
  rgb_src: jax.Array
  weights: jax.Array
  max_gap: jax.Array
  covisible: jax.Array | None = None
  occluded_tgt: jax.Array | None = None


def bilinear(image: jax.Array, px: jax.Array, frame: jax.Array | None = None) -> jax.Array:
  """Samples image [H, W, C] at px [..., 2] (x, y) with pixel centres at integers; zero outside.

  With `frame` (int, broadcastable to px[..., 0]), image is a stack [N, H, W, C] and each point
  reads its own frame: no per-point copy of a whole frame (what image[frame] then sampling
  would make inside jit).
  """
  h, w = image.shape[-3:-1]
  x, y = px[..., 0], px[..., 1]
  x0, y0 = jnp.floor(x), jnp.floor(y)
  out = 0.0
  for dx in (0, 1):
    for dy in (0, 1):
      xi, yi = x0 + dx, y0 + dy
      wt = (1.0 - jnp.abs(x - xi)) * (1.0 - jnp.abs(y - yi))
      inside = in_frame(jnp.stack([xi, yi], -1), h, w)
      index = (jnp.clip(yi, 0, h - 1).astype(jnp.int32), jnp.clip(xi, 0, w - 1).astype(jnp.int32))
      v = image[index] if frame is None else image[(jnp.broadcast_to(frame, x.shape),) + index]
      out = out + jnp.where(inside, wt, 0.0)[..., None] * v
  return out


def patch_zncc(frames: jax.Array, frame_a: jax.Array, px_a: jax.Array, frame_b: jax.Array,
               px_b: jax.Array, size_hw: jax.Array, taps: int, spacing: float) -> jax.Array:
  """Zero-normalised cross-correlation of colour patches around matched points.

  Args:
    frames: [N, H, W, 3] colours (possibly padded beyond the video's size).
    frame_a, frame_b: int frame of each point, broadcastable to [...] (e.g. [B, 1]).
    px_a, px_b: [..., 2] (x, y) px, pixel centres at integers.
    size_hw: [2] int32, the video's own (H, W): taps are clamped inside it, so padding is never
      read and a padded video gives the unpadded result.
    taps, spacing: a taps x taps grid of samples `spacing` px apart, centred on each point.

  Returns:
    [...] in [-1, 1]: each channel's patch mean removed, the correlation of the two 3 x taps^2
    vectors (near 0 where either patch is flat).
  """
  half = (taps - 1) / 2
  grid = (jnp.arange(taps, dtype=jnp.float32) - half) * spacing
  offsets = jnp.stack(jnp.meshgrid(grid, grid), -1).reshape(-1, 2)  # [T, 2] (dx, dy)
  hi = jnp.stack([size_hw[1], size_hw[0]]).astype(jnp.float32) - 1.0

  def patches(frame, px):
    q = jnp.clip(px[..., None, :] + offsets, 0.0, hi)  # [..., T, 2]
    v = bilinear(frames, q, jnp.expand_dims(frame, -1))  # [..., T, 3]
    return v - jnp.mean(v, axis=-2, keepdims=True)

  a, b = patches(frame_a, px_a), patches(frame_b, px_b)
  num = jnp.sum(a * b, axis=(-2, -1))
  return num / jnp.sqrt(jnp.sum(a * a, axis=(-2, -1)) * jnp.sum(b * b, axis=(-2, -1)) + 1e-6)


def max_gap(step: jax.Array, num_frames: int, start: int, grow_every: int) -> jax.Array:
  return jnp.minimum(start + step // grow_every, num_frames - 1)


def pair_probs(data: TrainData, src: jax.Array, gap_limit: jax.Array,
               adjacent_mass: float) -> jax.Array:
  """Probabilities [B, P] of each stored pair given source frames src [B] (padded pairs: 0)."""
  gaps = jnp.abs(data.pairs[:, 1] - data.pairs[:, 0])
  cand = (data.pairs[None, :, 0] == src[:, None]) & (gaps[None] <= gap_limit) & (gaps[None] >= 1)
  adjacent = cand & (gaps[None] == 1)
  far = cand & (gaps[None] > 1)
  n_adj = jnp.sum(adjacent, axis=1, keepdims=True)
  far_counts = jnp.where(far, data.pair_counts[None], 0.0)
  far_total = jnp.sum(far_counts, axis=1, keepdims=True)
  # Adjacent pairs share adjacent_mass; if no far pair has valid pixels they get everything.
  adj_share = jnp.where(far_total > 0, adjacent_mass, 1.0)
  return (jnp.where(adjacent, adj_share / jnp.maximum(n_adj, 1), 0.0)
          + (1.0 - adj_share) * far_counts / jnp.maximum(far_total, 1e-12))


def _inverse_cdf(key: jax.Array, weights: jax.Array, num: int) -> jax.Array:
  """num draws (with replacement) from unnormalised weights [B, M] -> [B, num] int32 indices.

  The uniforms have shape [B, num] whatever M is, so zero-weight entries appended to the rows
  (padding) change no draw.
  """
  cdf = jnp.cumsum(weights, axis=-1)
  u = jax.random.uniform(key, (weights.shape[0], num)) * cdf[:, -1:]
  idx = jax.vmap(lambda c, q: jnp.searchsorted(c, q, side='right'))(cdf, u)
  return jnp.minimum(idx, weights.shape[-1] - 1).astype(jnp.int32)


def sample_batch(key: jax.Array, data: TrainData, step: jax.Array, cfg: SamplerConfig,
                 error_map: jax.Array, frame_error: jax.Array, hard_mining: jax.Array) -> Batch:
  """Draws one step's pairs and points. See the module docstring.

  Args:
    key: this step's key (fold_in(root, step)).
    data: the video's TrainData.
    step: [] int32 0-based step.
    cfg: sampling parameters.
    error_map: [N, H, W] float32 blurred mapping error of adjacent flows (hard mining; zero
      in padding).
    frame_error: [N] float32 mean mapping error per frame (padded frames are never drawn).
    hard_mining: [] bool, whether error-based sampling is active at this step.
  """
  _, h, w = data.shape  # Padded sizes: the layout of the arrays.
  n, real_h, real_w = data.size[0], data.size[1], data.size[2]
  b, r = cfg.num_pairs, cfg.num_points
  k_src, k_pair, k_pts, k_hard, k_swap = jax.random.split(key, 5)

  frame_w = jnp.where(hard_mining, jnp.maximum(frame_error, 1e-12), 1.0)
  frame_w = jnp.where(jnp.arange(frame_error.shape[0]) < n, frame_w, 0.0)
  src = _inverse_cdf(k_src, frame_w[None], b)[0]
  gap_limit = max_gap(step, n, cfg.max_gap_start, cfg.max_gap_grow_every)
  pair = _inverse_cdf(k_pair, pair_probs(data, src, gap_limit, cfg.adjacent_mass), 1)[:, 0]
  tgt = data.pairs[pair, 1]
  gap = jnp.abs(tgt - src)

  inside = ((jnp.arange(h) < real_h)[:, None] & (jnp.arange(w) < real_w)[None]).reshape(h * w)
  cycle = data.cycle[pair].reshape(b, h * w)
  valid = jnp.where((gap == 1)[:, None], inside, cycle | data.occluded[pair].reshape(b, h * w))
  has_valid = jnp.any(valid, axis=-1)
  # A pair without valid pixels keeps all pixels as placeholders and gets zero weight.
  valid = valid | (~has_valid[:, None] & inside)
  base_w = valid / jnp.sqrt(data.counts[src].reshape(b, h * w) + 1.0)
  idx = _inverse_cdf(k_pts, base_w, r)
  num_hard = int(round(r * cfg.hard_mining_fraction))
  if num_hard > 0:
    hard_w = valid * error_map[src].reshape(b, h * w)
    hard_w = jnp.where(jnp.sum(hard_w, -1, keepdims=True) > 0, hard_w, base_w)
    hard_idx = _inverse_cdf(k_hard, hard_w, num_hard)
    idx = jnp.where(hard_mining, idx.at[:, :num_hard].set(hard_idx), idx)

  ys, xs = idx // w, idx % w
  px1 = jnp.stack([xs, ys], -1).astype(jnp.float32)
  px2 = px1 + data.flows[pair[:, None], ys, xs].astype(jnp.float32)
  rgb1 = data.frames[src[:, None], ys, xs]
  in_cycle = jnp.take_along_axis(cycle, idx, axis=-1)
  in_occluded = jnp.take_along_axis(data.occluded[pair].reshape(b, h * w), idx, axis=-1)

  weight = jnp.cos((gap - 1).astype(jnp.float32) / jnp.maximum(gap_limit, 1) * (jnp.pi / 2))
  weight = jnp.where(has_valid, weight, 0.0)[:, None] * jnp.ones((b, r))
  if cfg.appearance_min_zncc is not None:
    zncc = patch_zncc(data.frames, src[:, None], px1, tgt[:, None], px2, data.size[1:],
                      cfg.appearance_taps, cfg.appearance_spacing)
    # Only co-visible points: a point occluded in j (G mask) is rightly unlike its target.
    unlike = ((gap >= cfg.appearance_min_gap)[:, None] & in_cycle
              & (zncc < cfg.appearance_min_zncc))
    weight = jnp.where(unlike, 0.0, weight)
    in_cycle = in_cycle & ~unlike

  swap = jax.random.bernoulli(k_swap, cfg.swap_prob, (b,))
  rgb2 = bilinear(data.frames, px2, tgt[:, None])
  sw = swap[:, None]
  return Batch(
      src=jnp.where(swap, tgt, src), tgt=jnp.where(swap, src, tgt),
      px_src=jnp.where(sw[..., None], px2, px1), px_tgt=jnp.where(sw[..., None], px1, px2),
      rgb_src=jnp.where(sw[..., None], rgb2, rgb1),
      weights=jnp.where(sw, weight * in_cycle, weight),
      max_gap=gap_limit, covisible=in_cycle & has_valid[:, None],
      occluded_tgt=in_occluded & ~sw & has_valid[:, None])


def train_data(seq) -> TrainData:
  """TrainData (numpy) from a loaded sequence store (`store.SequenceData`)."""
  return TrainData(
      frames=seq.frames.astype(np.float32) / 255.0, pairs=seq.pairs.astype(np.int32),
      flows=seq.flows.astype(np.float16), cycle=seq.cycle, occluded=seq.occluded,
      counts=seq.counts.astype(np.float32), pair_counts=seq.pair_counts.astype(np.float32),
      adjacent_pair=adjacent_pair_index(seq.pairs, seq.frames.shape[0]),
      size=np.asarray(seq.frames.shape[:3], np.int32))
