"""Dominant (camera) motion of a video from its adjacent flows: per-frame 2D affines.

Used to initialise the optional per-frame affine layer of the bijection (`model.bijection.
frame_affine`, coupling.FrameAffine). Not in the reference: there, the coupling stack starts from
a random map and has to learn every frame's camera motion from scratch, which at a CPU budget of a
few thousand steps leaves videos with fast pans or zooms underfit (benchmarks/QUALITY.md). Starting
from the dominant motion puts the background in place on step 0; the couplings then learn the rest.

Conventions: pixels (x, y) with integer pixel centres; the model's local coordinates are
u = 2x/(W-1) - 1, v = 2y/(H-1) - 1 (geometry.py). An affine is a [2, 3] array acting on column
vectors (x, y, 1).
"""

import numpy as np


def fit_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
  """Least-squares similarity dst ~ s R src + b, as a [2, 3] affine; src, dst [M, 2] (M >= 2).

  Linear in (a, c, bx, by) with s R = [[a, -c], [c, a]] (Umeyama without the reflection case,
  which a similarity with a positive scale cannot produce here).
  """
  x, y = src[:, 0], src[:, 1]
  ones, zeros = np.ones_like(x), np.zeros_like(x)
  rows = np.concatenate([np.stack([x, -y, ones, zeros], -1), np.stack([y, x, zeros, ones], -1)])
  rhs = np.concatenate([dst[:, 0], dst[:, 1]])
  (a, c, bx, by), *_ = np.linalg.lstsq(rows, rhs, rcond=None)
  return np.array([[a, -c, bx], [c, a, by]])


def apply_affine(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
  """[2, 3] affine applied to points [..., 2]."""
  return points @ affine[:, :2].T + affine[:, 2]


def robust_similarity(src: np.ndarray, dst: np.ndarray, rng: np.random.Generator,
                      num_hypotheses: int, inlier_px: float,
                      num_refits: int = 2) -> tuple[np.ndarray, float]:
  """RANSAC similarity: the motion agreed on by most points, then refitted on its inliers.

  Hypotheses come from random point pairs (a similarity has 4 dof); the one with most points
  within `inlier_px` wins, so the largest coherent motion (the background, when it covers most of
  the frame) beats independently moving objects, which would drag a plain least-squares fit.

  Returns:
    ([2, 3] affine, fraction of the points that are inliers of the final fit).
  """
  best, best_count = fit_similarity(src, dst), -1
  for _ in range(num_hypotheses):
    pick = rng.choice(len(src), 2, replace=False)
    if np.allclose(src[pick[0]], src[pick[1]]):
      continue
    guess = fit_similarity(src[pick], dst[pick])
    count = int((np.linalg.norm(apply_affine(guess, src) - dst, axis=-1) <= inlier_px).sum())
    if count > best_count:
      best, best_count = guess, count
  for _ in range(num_refits):
    keep = np.linalg.norm(apply_affine(best, src) - dst, axis=-1) <= inlier_px
    if keep.sum() < 2:
      break
    best = fit_similarity(src[keep], dst[keep])
  keep = np.linalg.norm(apply_affine(best, src) - dst, axis=-1) <= inlier_px
  return best, float(keep.mean())


def _to_3x3(affine: np.ndarray) -> np.ndarray:
  return np.concatenate([affine, [[0.0, 0.0, 1.0]]], axis=0)


def pixel_to_local(height: int, width: int) -> np.ndarray:
  """[3, 3] homogeneous map from raster px (x, y) to local (u, v) (geometry.pixels_to_normalized)."""
  return np.array([[2.0 / (width - 1), 0.0, -1.0], [0.0, 2.0 / (height - 1), -1.0],
                   [0.0, 0.0, 1.0]])


def fit_pair_motions(flows: np.ndarray, valid: np.ndarray, *, num_points: int,
                     num_hypotheses: int, inlier_px: float,
                     seed: int = 0) -> tuple[np.ndarray, list[float]]:
  """Dominant motion of each adjacent pair, in raster px.

  Args:
    flows: [N-1, H, W, 2] (dx, dy) px flow of frame i into frame i+1.
    valid: [N-1, H, W] bool, pixels whose flow is trusted (e.g. cycle-consistent).
    num_points: valid pixels drawn per pair for the fit.
    num_hypotheses, inlier_px: see `robust_similarity`.
    seed: numpy seed for the point draw.

  Returns:
    (affines [N-1, 2, 3] mapping px of frame i to px of frame i+1, inlier fraction per pair). A
    pair without 3 valid pixels gets the identity and inlier fraction 0.
  """
  rng = np.random.default_rng(seed)
  height, width = valid.shape[1:]
  ys, xs = np.mgrid[0:height, 0:width]
  pix = np.stack([xs, ys], -1).reshape(-1, 2).astype(np.float64)
  affines, inliers = [], []
  for flow, ok in zip(flows, valid):
    idx = np.flatnonzero(ok.reshape(-1))
    if len(idx) < 3:  # Nothing to fit: assume no motion.
      affines.append(np.eye(2, 3))
      inliers.append(0.0)
      continue
    idx = rng.choice(idx, min(num_points, len(idx)), replace=False)
    src = pix[idx]
    dst = src + flow.reshape(-1, 2)[idx].astype(np.float64)
    affine, frac = robust_similarity(src, dst, rng, num_hypotheses, inlier_px)
    affines.append(affine)
    inliers.append(frac)
  return np.stack(affines), inliers


def independent_motion(flows: np.ndarray, affines: np.ndarray, threshold_px: float) -> np.ndarray:
  """bool [N-1, H, W]: pixels whose flow departs from their pair's dominant motion by > threshold.

  flows [N-1, H, W, 2] px and affines [N-1, 2, 3] px from `fit_pair_motions`.
  """
  height, width = flows.shape[1:3]
  ys, xs = np.mgrid[0:height, 0:width]
  pix = np.stack([xs, ys], -1).astype(np.float64)
  moved = pix[None] + flows.astype(np.float64)
  predicted = np.einsum('pij,hwj->phwi', affines[:, :, :2], pix) + affines[:, None, None, :, 2]
  return np.linalg.norm(moved - predicted, axis=-1) > threshold_px


def motion_labels(flows: np.ndarray, valid: np.ndarray, affines: np.ndarray,
                  threshold_px: float) -> np.ndarray:
  """float32 [N, H, W] per-pixel labels: 1 moves on its own, 0 follows the dominant motion, -1
  unknown (untrusted flow).

  Frame i < N-1 is labelled from pair (i, i+1); the last frame reuses pair (N-2, N-1)'s labels
  at the same pixels (an approximation; they only steer an early, temporary loss).
  flows [N-1, H, W, 2] px, valid [N-1, H, W] bool, affines [N-1, 2, 3] from `fit_pair_motions`.
  """
  moving = independent_motion(flows, affines, threshold_px).astype(np.float32)
  labels = np.where(valid, moving, -1.0).astype(np.float32)
  return np.concatenate([labels, labels[-1:]], axis=0)


def estimate_frame_affines(flows: np.ndarray, valid: np.ndarray, *, num_points: int,
                           num_hypotheses: int, inlier_px: float, max_radius: float,
                           seed: int = 0) -> tuple[np.ndarray, dict]:
  """Per-frame affines from local (u, v) to a common 'canonical' plane, from adjacent flows.

  Args:
    flows, valid, num_points, num_hypotheses, inlier_px, seed: see `fit_pair_motions`.
    max_radius: the result is scaled about the origin so that every frame's corners land within
      this radius of it (canonical points beyond radius 1 are contracted by the canonical field's
      input mapping, so fast pans would otherwise lose resolution). Frames are chained to the
      middle frame, which is the identity before that scaling.

  Returns:
    (affines [N, 2, 3] acting on local (u, v), info dict with per-pair 'inlier_fraction' and the
    applied 'scale').
  """
  num_pairs, height, width = valid.shape
  num_frames = num_pairs + 1
  pair_px, inliers = fit_pair_motions(flows, valid, num_points=num_points,
                                      num_hypotheses=num_hypotheses, inlier_px=inlier_px, seed=seed)
  to_local = pixel_to_local(height, width)
  to_px = np.linalg.inv(to_local)
  steps = [to_local @ _to_3x3(a) @ to_px for a in pair_px]  # local(i) -> local(i+1)
  # Chain to the middle frame: C_ref = I, C_i = C_{i+1} S_i below it, C_{i+1} = C_i S_i^-1 above.
  ref = num_frames // 2
  chain = [None] * num_frames
  chain[ref] = np.eye(3)
  for i in range(ref - 1, -1, -1):
    chain[i] = chain[i + 1] @ steps[i]
  for i in range(ref, num_frames - 1):
    chain[i + 1] = chain[i] @ np.linalg.inv(steps[i])
  chain = np.stack(chain)
  corners = np.array([[-1.0, -1.0, 1.0], [1.0, -1.0, 1.0], [-1.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
  reach = np.linalg.norm(np.einsum('nij,cj->nci', chain[:, :2], corners), axis=-1).max()
  scale = min(1.0, max_radius / reach)
  chain[:, :2] *= scale
  return chain[:, :2].astype(np.float32), {'inlier_fraction': inliers, 'scale': float(scale)}
