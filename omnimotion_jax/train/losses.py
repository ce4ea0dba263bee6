"""Training losses and their weight schedules (paper Sec. 4; reference
`trainer.py`, compute_all_losses and masked_l1_loss).

Every function is pure jax.numpy with static shapes, so it can run inside a jitted train step:
validity is carried by boolean masks and `jnp.where`, never by boolean indexing. Every weight
and threshold is an explicit argument (no config objects here).

Shapes: M = number of points (flattened over the pairs of a batch, in pair order), K = samples
per ray, S = rays used by the smoothness term, C = channels.

Empty masks give a loss of exactly 0 with finite gradients. The reference instead indexes the
valid points and takes a torch mean, which gives NaN on an empty selection; its train step guards
the flow/rgb terms with "if no point is in the image, these terms are 0" (Sec. 3, item 8).
"""

import jax
import jax.numpy as jnp

# Added to the weight sum in the normalised L1 (the reference's epsilon), so that an all-zero
# weight set gives 0 instead of 0/0.
NORMALIZE_EPS = 1e-8


def _safe_divide(num: jax.Array, den: jax.Array) -> jax.Array:
  """num / den where den > 0, else 0; the where on den keeps the gradient finite too."""
  ok = den > 0
  return jnp.where(ok, num / jnp.where(ok, den, 1.0), 0.0)


def masked_mean_l1(err: jax.Array, mask: jax.Array, weights: jax.Array | None = None, *,
                   drop_max: bool, normalize: bool = False) -> jax.Array:
  """Masked (optionally weighted) mean of per-point L1 errors, optionally dropping the maximum.

  This is the reference's `masked_l1_loss` on the points selected by `mask`.

  drop_max: the reference always compares the errors with their q=1 quantile (the maximum of the
  selected errors) using a strict '<', so the largest error and every tie with it are dropped.
  Here that behaviour is an explicit option: drop_max=True reproduces it, drop_max=False keeps
  every masked element. If all masked errors are equal, drop_max=True drops them all and the
  result is 0.

  Args:
    err: [M] per-point error, already reduced over coordinates (>= 0).
    mask: [M] bool, the points that take part.
    weights: [M] per-point weights, or None for 1.
    drop_max: drop the masked elements whose error equals the masked maximum.
    normalize: False -> mean over kept elements of err*w (a plain mean, not divided by the
      weight sum); True -> sum_kept(err*w) / (sum_kept(w) + NORMALIZE_EPS).

  Returns:
    Scalar loss; 0 when no element is kept.
  """
  mask = mask.astype(bool)
  keep = mask
  if drop_max:
    # The threshold is only compared against, never differentiated through.
    max_err = jax.lax.stop_gradient(jnp.max(jnp.where(mask, err, -jnp.inf)))
    keep = mask & (err < max_err)
  w = jnp.ones_like(err) if weights is None else weights.astype(err.dtype)
  # where (not multiply by mask) so NaN/inf at dropped positions cannot leak into the sum.
  total = jnp.sum(jnp.where(keep, err * w, 0.0))
  if normalize:
    den = jnp.sum(jnp.where(keep, w, 0.0)) + NORMALIZE_EPS
    return _safe_divide(total, den)
  return _safe_divide(total, jnp.sum(keep).astype(err.dtype))


def flow_loss(pred_px: jax.Array, target_px: jax.Array, weights: jax.Array, in_image: jax.Array,
              *, drop_max: bool) -> jax.Array:
  """Flow loss: weighted L1 in px between predicted and target correspondences (Sec. 3, item 1).

  Args:
    pred_px: [M, 2] predicted (x, y) px in the target frame.
    target_px: [M, 2] RAFT / chained target (x, y) px.
    weights: [M] per-point pair weights.
    in_image: [M] bool, predicted target inside the image (the reference's `mask`).
    drop_max: drop the largest per-point error (the reference does).

  Returns:
    Scalar mean over kept points of w * mean_xy |pred - target| (not divided by sum w).
  """
  err = jnp.mean(jnp.abs(pred_px - target_px), axis=-1)
  return masked_mean_l1(err, in_image, weights, drop_max=drop_max, normalize=False)


def photometric_loss(pred_rgb: jax.Array, gt_rgb: jax.Array, mask: jax.Array) -> jax.Array:
  """MSE over masked points x 3 channels (Sec. 3, item 2); 0 when the mask is empty.

  Args:
    pred_rgb: [M, 3] rendered source colour.
    gt_rgb: [M, 3] ground-truth colour.
    mask: [M] bool, source pixel inside the image (the reference's `rgb_mask`).
  """
  mask = mask.astype(bool)
  sq = jnp.where(mask[:, None], jnp.square(pred_rgb - gt_rgb), 0.0)
  count = jnp.sum(mask).astype(sq.dtype) * pred_rgb.shape[-1]
  return _safe_divide(jnp.sum(sq), count)


def consecutive_difference_loss(pred: jax.Array, target: jax.Array, mask: jax.Array,
                                weights: jax.Array | None, *, drop_max: bool,
                                normalize: bool) -> jax.Array:
  """The reference's "gradient" losses: L1 between consecutive differences of pred and target.

  For each consecutive pair (k, k+1) of the point list with both points in `mask`:
  err_k = mean_C |(pred[k+1] - pred[k]) - (target[k+1] - target[k])|, with pair weight
  w_k * w_{k+1} when weights are given, then `masked_mean_l1` over the pairs.

  Deliberate difference from the reference: the reference first flattens the batch to the list of
  valid points only (boolean indexing) and differences consecutive entries of that list. The
  points are randomly sampled, so neighbours are unrelated points (even across pair boundaries)
  and this is really a pairwise-difference loss, not a spatial gradient. With static shapes we
  keep the full list and use only consecutive pairs whose two entries are both valid; a pair
  spanning an invalid point is skipped instead of joining its neighbours, which only changes
  which random points are paired. (Exact emulation would need a stable compaction of the valid
  points first, e.g. a stable argsort on ~mask.)

  Args:
    pred: [M, C] predictions.
    target: [M, C] targets.
    mask: [M] bool, valid points.
    weights: [M] per-point weights, or None.
    drop_max: drop the largest pair error(s).
    normalize: see `masked_mean_l1`.

  Returns:
    Scalar loss; 0 when no consecutive pair is valid.
  """
  mask = mask.astype(bool)
  d_pred = pred[1:] - pred[:-1]
  d_target = target[1:] - target[:-1]
  err = jnp.mean(jnp.abs(d_pred - d_target), axis=-1)
  pair_mask = mask[1:] & mask[:-1]
  pair_w = None if weights is None else weights[1:] * weights[:-1]
  return masked_mean_l1(err, pair_mask, pair_w, drop_max=drop_max, normalize=normalize)


def rgb_grad_loss(pred_rgb: jax.Array, gt_rgb: jax.Array, mask: jax.Array, *,
                  drop_max: bool) -> jax.Array:
  """RGB "gradient" loss (Sec. 3, item 3): unweighted consecutive differences, plain mean.

  Args:
    pred_rgb: [M, 3] rendered colours.
    gt_rgb: [M, 3] ground-truth colours.
    mask: [M] bool, valid points.
    drop_max: drop the largest pair error(s).
  """
  return consecutive_difference_loss(pred_rgb, gt_rgb, mask, None, drop_max=drop_max,
                                     normalize=False)


def flow_grad_loss(pred_px: jax.Array, target_px: jax.Array, weights: jax.Array, mask: jax.Array,
                   *, drop_max: bool) -> jax.Array:
  """Flow "gradient" loss (Sec. 3, item 4): pair weights w_k w_{k+1}, normalised by their sum.

  Args:
    pred_px: [M, 2] predicted target px.
    target_px: [M, 2] target px.
    weights: [M] per-point pair weights.
    mask: [M] bool, predicted target inside the image.
    drop_max: drop the largest pair error(s).
  """
  return consecutive_difference_loss(pred_px, target_px, mask, weights, drop_max=drop_max,
                                     normalize=True)


def depth_range_loss(z: jax.Array, min_depth: float, max_depth: float) -> jax.Array:
  """Squared penalty on depths outside [min_depth, max_depth] (Sec. 3, item 5; Sec. 8 item 16).

  Covers every mapped target sample, not only the ones with weight.

  Args:
    z: [M, K] target-frame depths of the mapped samples.
    min_depth: lower bound (0 in the reference).
    max_depth: upper bound (2 in the reference).

  Returns:
    [sum_{z<min} (z-min)^2 + sum_{z>max} (z-max)^2] / (M*K).
  """
  below = jnp.minimum(z - min_depth, 0.0)
  above = jnp.maximum(z - max_depth, 0.0)
  return jnp.mean(jnp.square(below) + jnp.square(above))


def distortion_loss(weights: jax.Array, z: jax.Array) -> jax.Array:
  """mip-NeRF 360 distortion loss on each ray, averaged over rays (Sec. 3, item 6).

  Intervals: edges [z_0, ..., z_{K-1}, z_{K-1}] (the last depth repeated, as in the reference, so
  the last interval has zero width), midpoints m_i and widths d_i of the K intervals.
  L = sum_ij w_i w_j |m_i - m_j| + (1/3) sum_i w_i^2 d_i.

  The O(K^2) pairwise term is computed in O(K): for sorted midpoints,
  sum_ij w_i w_j |m_i - m_j| = 2 sum_i w_i (m_i W_{<i} - (wm)_{<i}), with exclusive cumulative
  sums W_{<i} = sum_{j<i} w_j and (wm)_{<i} = sum_{j<i} w_j m_j. This assumes z is non-decreasing
  along each ray (stratified samples are), which makes the midpoints non-decreasing as well.

  Args:
    weights: [M, K] blending weights (the depth-range-masked source weights).
    z: [M, K] sample depths, non-decreasing along K.

  Returns:
    Scalar mean over the M rays.
  """
  edges = jnp.concatenate([z, z[..., -1:]], axis=-1)
  mid = 0.5 * (edges[..., 1:] + edges[..., :-1])
  width = edges[..., 1:] - edges[..., :-1]
  wm = weights * mid
  # Exclusive cumsums: inclusive minus the current element.
  w_before = jnp.cumsum(weights, axis=-1) - weights
  wm_before = jnp.cumsum(wm, axis=-1) - wm
  pairwise = 2.0 * jnp.sum(weights * (mid * w_before - wm_before), axis=-1)
  intra = jnp.sum(jnp.square(weights) * width, axis=-1) / 3.0
  return jnp.mean(pairwise + intra)


def smoothness_loss(x_prev: jax.Array, x: jax.Array, x_next: jax.Array, mask: jax.Array, *,
                    drop_max: bool) -> jax.Array:
  """Scene-flow smoothness: L1 on the 3D acceleration of samples (Sec. 3 item 7, Sec. 8 item 17).

  Each local sample X of frame i, mapped to frames i-1 and i+1, gives the second difference
  X_{i+1} - 2X + X_{i-1} in normalised local coordinates. Not weighted by the blending weights.

  Args:
    x_prev: [S, K, 3] samples mapped to frame i-1.
    x: [S, K, 3] samples in frame i.
    x_next: [S, K, 3] samples mapped to frame i+1.
    mask: [S] bool per ray (e.g. 1 <= i <= N-2), broadcast to its K samples.
    drop_max: drop the largest per-sample error (the reference does).

  Returns:
    Scalar mean over kept samples of mean_xyz |X_{i+1} - 2X + X_{i-1}|.
  """
  err = jnp.mean(jnp.abs(x_next - 2.0 * x + x_prev), axis=-1)
  sample_mask = jnp.broadcast_to(mask.astype(bool)[:, None], err.shape)
  return masked_mean_l1(err.reshape(-1), sample_mask.reshape(-1), None, drop_max=drop_max,
                        normalize=False)


def loss_weights(step, *, w_flow: float, w_rgb_ramp_steps: float, w_rgb_max: float,
                 w_flow_grad_ramp_steps: float, w_flow_grad_max: float, w_depth_range: float,
                 w_distortion_start: float, w_distortion_ramp_steps: float,
                 w_distortion_max: float, w_smooth: float) -> dict[str, jax.Array]:
  """Loss weights at a training step (Sec. 3, "Schedules").

  `step` is the 0-based optimiser step (python int or traced int). The reference's global step
  starts at 1, so the schedules use s = step + 1:
    rgb, rgb_grad: clip(s / w_rgb_ramp_steps, 0, w_rgb_max);
    flow_grad:     clip(s / w_flow_grad_ramp_steps, 0, w_flow_grad_max);
    distortion:    0 for s <= start, else clip((s - start) / w_distortion_ramp_steps, 0, max);
    flow, depth_range, smooth: constants.

  Returns:
    Dict of float32 scalars with keys 'flow', 'rgb', 'rgb_grad', 'flow_grad', 'depth_range',
    'distortion', 'smooth'.
  """
  s = (jnp.asarray(step) + 1).astype(jnp.float32)
  w_rgb = jnp.clip(s / w_rgb_ramp_steps, 0.0, w_rgb_max)
  w_flow_grad = jnp.clip(s / w_flow_grad_ramp_steps, 0.0, w_flow_grad_max)
  w_dist = jnp.where(
      s <= w_distortion_start, 0.0,
      jnp.clip((s - w_distortion_start) / w_distortion_ramp_steps, 0.0, w_distortion_max))
  const = lambda v: jnp.asarray(v, jnp.float32)  # noqa: E731
  return {
      'flow': const(w_flow),
      'rgb': w_rgb,
      'rgb_grad': w_rgb,
      'flow_grad': w_flow_grad,
      'depth_range': const(w_depth_range),
      'distortion': w_dist.astype(jnp.float32),
      'smooth': const(w_smooth),
  }


def total_loss(terms: dict[str, jax.Array], weights: dict[str, jax.Array]) -> jax.Array:
  """sum_k weights[k] * terms[k] over the keys of `terms` (every key must be in `weights`)."""
  total = jnp.zeros((), jnp.float32)
  for name, value in terms.items():
    total = total + weights[name] * value
  return total
