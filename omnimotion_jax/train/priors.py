"""What training derives from the flows besides the step: motion-depth labels, hard-mining maps.

* Motion-depth labels (not in the reference): the dominant (camera) motion of each adjacent pair
  (a RANSAC similarity of the cycle-consistent flow) and, per pixel, whether its flow departs
  from it. The motion-depth prior (config.train.loss.w_motion_depth) pulls such pixels in front
  early in training, which seeds the depth layering that independently moving objects need.
* Hard-mining error maps (paper Sec. 4; reference `trainer.py`): |predicted - input| adjacent
  flow for every pixel of every frame, blurred, refreshed every `HardMiningConfig.every` steps.

Conventions: pixels (x, y) with integer pixel centres; an affine is a [2, 3] array acting on
column vectors (x, y, 1).
"""

import dataclasses

import cv2
import numpy as np

from omnimotion_jax.model import model as model_lib
from omnimotion_jax.model import render
from omnimotion_jax.train import sampler


@dataclasses.dataclass(frozen=True)
class PriorsConfig:
  """Dominant-motion fit for the motion-depth labels (config.train.priors)."""
  motion_fit_points: int
  motion_fit_hypotheses: int
  motion_fit_inlier_px: float
  motion_threshold_px: float


@dataclasses.dataclass(frozen=True)
class HardMiningConfig:
  """When and how the error maps are made (config.train.hard_mining)."""
  start: int
  every: int
  stride: int
  blur_ksize: int

  def due(self, step: int) -> bool:
    """Whether the maps are (re)computed before `step`."""
    return step >= self.start and (step - self.start) % self.every == 0


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


def adjacent_forward(data: sampler.TrainData) -> tuple[np.ndarray, np.ndarray]:
  """(flows [N-1, H, W, 2], cycle masks [N-1, H, W]) of the pairs (i, i+1), as numpy."""
  rows = np.asarray(data.adjacent_pair)[:data.frames.shape[0] - 1]
  return np.asarray(data.flows)[rows], np.asarray(data.cycle)[rows]


def video_motion_labels(data: sampler.TrainData, cfg: PriorsConfig) -> np.ndarray:
  """[N, H, W] `motion_labels` of a video from its adjacent cycle-consistent flows.

  Deterministic (fixed numpy seed), so a resumed run rebuilds the same labels.
  """
  n, h, w = data.frames.shape[:3]
  if n < 2:
    return np.full((n, h, w), -1.0, np.float32)
  flows, valid = adjacent_forward(data)
  affines, _ = fit_pair_motions(flows, valid, num_points=cfg.motion_fit_points,
                                num_hypotheses=cfg.motion_fit_hypotheses,
                                inlier_px=cfg.motion_fit_inlier_px)
  return motion_labels(flows, valid, affines, cfg.motion_threshold_px)


def compiled_error_mapper(model_cfg: model_lib.ModelConfig, video: render.VideoShape):
  """The jitted mapper of the error maps (no occlusion pass), cached per model and video."""
  return render.compiled_mapper(model_cfg, video, 0.0, with_occlusion=False)


def adjacent_error_maps(mapper, params, flows_adjacent: np.ndarray, video: render.VideoShape,
                        cfg: HardMiningConfig, *, chunk_size: int):
  """Hard-mining error maps: |predicted - input| adjacent flow for every frame.

  Args:
    mapper: from `compiled_error_mapper` (render.make_mapper).
    flows_adjacent: [N, H, W, 2] input flow from frame i to i+1 (the last frame: to N-2).
    cfg: every `cfg.stride`-th pixel is mapped (then nearest-upsampled), and each map is blurred
      with a `cfg.blur_ksize` Gaussian (OpenCV's automatic sigma).

  Returns:
    error_map [N, H, W] float32 and frame_error [N] float32 (mean error per frame, px).
  """
  n, h, w, stride = video.num_frames, video.height, video.width, cfg.stride
  ys, xs = np.arange(0, h, stride), np.arange(0, w, stride)
  yy, xx = np.meshgrid(ys, xs, indexing='ij')
  px = np.stack([xx.ravel(), yy.ravel()], -1).astype(np.float32)
  m = px.shape[0]
  src = np.repeat(np.arange(n, dtype=np.int32), m)
  tgt = np.where(src < n - 1, src + 1, n - 2).astype(np.int32)
  mapped, _, _ = render.map_in_chunks(mapper, params, np.tile(px, (n, 1)), src, tgt, chunk_size)
  pred_flow = mapped.reshape(n, len(ys), len(xs), 2) - px.reshape(1, len(ys), len(xs), 2)
  ref_flow = flows_adjacent[:, ::stride, ::stride].astype(np.float32)
  err = np.linalg.norm(pred_flow - ref_flow, axis=-1)
  frame_error = err.reshape(n, -1).mean(-1)
  up = np.repeat(np.repeat(err, stride, axis=1), stride, axis=2)[:, :h, :w]
  blurred = np.stack([cv2.GaussianBlur(e, (cfg.blur_ksize, cfg.blur_ksize), 0) for e in up])
  return blurred.astype(np.float32), frame_error.astype(np.float32)
