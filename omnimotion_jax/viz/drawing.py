"""Visualisations of a run: tracks, trails, pseudo-depth, GT comparison, and a workdir's videos.

Everything here is numpy + cv2 drawing on uint8 RGB frames [T, H, W, 3], at the resolution of the
frames given (for a workdir: the model's resolution, i.e. the frames of `sequence.npz`, in which
`tracks.npz` is expressed).

Conventions:
  * Tracks are (x, y) px, raster coordinates with integer values at pixel centres (x = column).
    Queries are (t, y, x) with t a frame index. Occlusion flags are True where occluded.
  * Markers are drawn with cv2's fixed-point `shift` (SUBPIXEL_BITS fractional bits), so a dot at
    (10.25, 5.75) is centred there and not at the rounded pixel. cv2 also puts pixel centres at
    integer coordinates, so no half-pixel offset is needed.
  * Colours are RGB tuples (the frames are RGB; cv2 writes channels in array order).

Videos are written with `omnimotion_jax.video.save_video` (atomic). `write_video` pads odd frame
sizes to even (one black row / column) so H.264 uses yuv420p, the only chroma format every browser
plays.

Workdir layout read by `render_outputs` (each optional): sequence.npz (frames, frame_indices),
tracks.npz (tracks, occluded, query_points), depth.npy, gt.npz (target_points, occluded), masks/
(per input frame foreground PNGs) or mask.png (RGBA of the query frame). It writes report/*.mp4
plus a poster PNG per video (report/<name>.png, the middle frame).
"""

import logging
import os
from pathlib import Path

import cv2
import numpy as np

from omnimotion_jax.data import video as video_lib

log = logging.getLogger(__name__)

SUBPIXEL_BITS = 4  # cv2 `shift`: coordinates carry 1/16 px.
_SUBPIXEL_SCALE = 1 << SUBPIXEL_BITS
# Coordinates further than this many frame sizes outside the frame are not drawn (int overflow).
_FAR_OUTSIDE = 4
MIN_RADIUS = 2  # px; smaller dots are hard to see.
RADIUS_PER_PX = 1.0 / 128  # default radius = this x min(H, W) (2 px at 256 px, as the reference).
# Colour wheel: saturation from SATURATION_MIN at the frame centre to 1 at the corners, so points
# at the centre are still coloured (not white on a bright frame).
SATURATION_MIN = 0.3
CROSS_THICKNESS = 1  # px, occluded-point crosses.
SEPARATOR_PX = 2  # side_by_side separator width (even, so even inputs stay even).
SEPARATOR_VALUE = 255  # white separators.
DEPTH_PERCENTILES = (1.0, 99.0)  # robust range of colorize_depth.
DEPTH_COLORMAP = 'turbo'
# Trails (reference `viz.py`): opacity max(1 - FADE * age / (n * FADE_DENOM), MIN_OPACITY).
TRAIL_FADE = 0.9
TRAIL_FADE_DENOM = 0.99
TRAIL_MIN_OPACITY = 0.1
DEFAULT_TAIL_LENGTH = 10  # frames.
TRAIL_COLORMAP = 'jet'
MASK_ERODE_PX = 3  # 7x7 kernel, as the reference.
# GT comparison.
GT_RING_COLOR = (255, 255, 255)
# Tracks of the ground-truth queries, when tracks.npz holds a display grid instead.
EVAL_TRACKS_FILE = 'tracks_eval.npz'
OCCLUSION_MISMATCH_COLOR = (255, 0, 255)  # magenta: predicted and GT occlusion disagree.
BOTH_OCCLUDED_COLOR = (128, 128, 128)
ERROR_COLORMAP = 'RdYlGn_r'  # green = small error, red = large.
# Error colour saturates at the largest TAP-Vid threshold (16 px on a 256 px raster), scaled.
ERROR_MAX_PX_AT_256 = 16.0
TAPVID_RASTER = 256
# Point thinning for the workdir videos (dense tracks would hide the video).
MAX_DRAWN_POINTS = 1024
MAX_TRAIL_POINTS = 256
MAX_BACKGROUND_POINTS = 4096  # enough for a stable median; bounds the cost for dense tracks.
DEFAULT_FPS = 10
POSTER_SUFFIX = '.png'

# Names of the videos render_outputs writes under report/ (report.py lists them in this order).
VIDEO_NAMES = ('side_by_side', 'tracks', 'trails', 'depth', 'gt_comparison')


# --- small helpers ----------------------------------------------------------------------------

def default_radius(height: int, width: int) -> int:
  """Marker radius (px) for frames of size (height, width)."""
  return max(MIN_RADIUS, int(round(min(height, width) * RADIUS_PER_PX)))


def _fixed(point, height: int, width: int):
  """(x, y) float px -> cv2 fixed-point int tuple, or None if non-finite / far outside."""
  x, y = float(point[0]), float(point[1])
  if not (np.isfinite(x) and np.isfinite(y)):
    return None
  if abs(x) > _FAR_OUTSIDE * width or abs(y) > _FAR_OUTSIDE * height:
    return None
  return int(round(x * _SUBPIXEL_SCALE)), int(round(y * _SUBPIXEL_SCALE))


def _colormap(name: str, values: np.ndarray) -> np.ndarray:
  """values in [0, 1] -> uint8 RGB [..., 3] through matplotlib colormap `name`."""
  from matplotlib import colormaps  # Lazy: matplotlib import is slow.
  rgba = colormaps[name](np.clip(values, 0.0, 1.0))
  return (rgba[..., :3] * 255.0 + 0.5).astype(np.uint8)


def _as_color(color) -> tuple[int, int, int]:
  return tuple(int(c) for c in color[:3])


def position_colors(query_points: np.ndarray, height: int, width: int) -> np.ndarray:
  """A 2D colour wheel over the query positions: neighbouring points get similar colours.

  Hue is the angle of (x, y) around the frame centre, saturation grows with the distance from the
  centre (SATURATION_MIN at the centre, 1 at the corners), value is 1.

  Args:
    query_points: float [Q, 3] (t, y, x) queries; their (x, y) is the point in its query frame.
    height, width: frame size in px.

  Returns:
    uint8 [Q, 3] RGB.
  """
  query_points = np.asarray(query_points, np.float64).reshape(-1, 3)
  cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
  # Normalise so the frame is a unit square around the centre (aspect does not skew the wheel).
  dx = (query_points[:, 2] - cx) / max(cx, 1.0)
  dy = (query_points[:, 1] - cy) / max(cy, 1.0)
  hue = (np.arctan2(dy, dx) / (2 * np.pi)) % 1.0
  radius = np.clip(np.hypot(dx, dy) / np.sqrt(2.0), 0.0, 1.0)
  saturation = SATURATION_MIN + (1.0 - SATURATION_MIN) * radius
  hsv = np.stack([hue * 180.0, saturation * 255.0, np.full_like(hue, 255.0)], -1)
  hsv = np.clip(np.round(hsv), 0, 255).astype(np.uint8)[None]  # cv2 hue range is [0, 180).
  return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0]


def index_colors(num_points: int, colormap: str = TRAIL_COLORMAP) -> np.ndarray:
  """uint8 [num_points, 3] RGB: colormap over the point index (first = low end)."""
  return _colormap(colormap, np.arange(num_points) / max(num_points - 1, 1))


def _draw_dot(frame, point, radius, color, height, width) -> None:
  center = _fixed(point, height, width)
  if center is not None:
    cv2.circle(frame, center, int(round(radius * _SUBPIXEL_SCALE)), color, -1, cv2.LINE_AA,
               SUBPIXEL_BITS)


def _draw_ring(frame, point, radius, color, height, width, thickness=1) -> None:
  center = _fixed(point, height, width)
  if center is not None:
    cv2.circle(frame, center, int(round(radius * _SUBPIXEL_SCALE)), color, thickness, cv2.LINE_AA,
               SUBPIXEL_BITS)


def _draw_cross(frame, point, radius, color, height, width, thickness=CROSS_THICKNESS) -> None:
  """An 'x' with half-size `radius` px centred on `point`."""
  center = _fixed(point, height, width)
  if center is None:
    return
  x, y = center
  r = int(round(radius * _SUBPIXEL_SCALE))
  cv2.line(frame, (x - r, y - r), (x + r, y + r), color, thickness, cv2.LINE_AA, SUBPIXEL_BITS)
  cv2.line(frame, (x - r, y + r), (x + r, y - r), color, thickness, cv2.LINE_AA, SUBPIXEL_BITS)


def _draw_line(frame, start, end, color, height, width, thickness=1) -> None:
  a, b = _fixed(start, height, width), _fixed(end, height, width)
  if a is not None and b is not None:
    cv2.line(frame, a, b, color, thickness, cv2.LINE_AA, SUBPIXEL_BITS)


def _check_tracks(frames, tracks, occluded):
  frames = np.asarray(frames)
  tracks = np.asarray(tracks, np.float64)
  occluded = np.asarray(occluded, bool)
  if frames.ndim != 4 or frames.shape[-1] != 3:
    raise ValueError(f'frames must be [T, H, W, 3], got {frames.shape}')
  if tracks.ndim != 3 or tracks.shape[-1] != 2 or tracks.shape[1] != frames.shape[0]:
    raise ValueError(f'tracks must be [Q, T, 2] with T = {frames.shape[0]}, got {tracks.shape}')
  if occluded.shape != tracks.shape[:2]:
    raise ValueError(f'occluded must be [Q, T] = {tracks.shape[:2]}, got {occluded.shape}')
  return frames, tracks, occluded


# --- tracks -----------------------------------------------------------------------------------

def draw_tracks(frames: np.ndarray, tracks: np.ndarray, occluded: np.ndarray,
                query_points: np.ndarray, *, radius: float | None = None,
                hide_occluded: bool = False, colors: np.ndarray | None = None) -> np.ndarray:
  """Draws every point on every frame, coloured by its position in its query frame.

  Args:
    frames: uint8 [T, H, W, 3] RGB.
    tracks: float [Q, T, 2] (x, y) px, pixel centres at integers; sub-pixel positions are kept.
    occluded: bool [Q, T].
    query_points: float [Q, 3] (t, y, x); the colour comes from (x, y) (`position_colors`).
    radius: dot radius in px (cross half-size for occluded points); None = `default_radius`.
    hide_occluded: skip occluded points instead of drawing them as crosses.
    colors: optional uint8 [Q, 3] RGB colours overriding the colour wheel.

  Returns:
    uint8 [T, H, W, 3], a copy of `frames` with filled dots (visible) and 'x' crosses (occluded).
  """
  frames, tracks, occluded = _check_tracks(frames, tracks, occluded)
  _, height, width, _ = frames.shape
  radius = default_radius(height, width) if radius is None else radius
  if colors is None:
    colors = position_colors(query_points, height, width)
  colors = [_as_color(c) for c in np.asarray(colors)]
  out = frames.astype(np.uint8, copy=True)
  for t in range(out.shape[0]):
    frame = out[t]
    for q in range(tracks.shape[0]):
      if occluded[q, t]:
        if not hide_occluded:
          _draw_cross(frame, tracks[q, t], radius, colors[q], height, width)
      else:
        _draw_dot(frame, tracks[q, t], radius, colors[q], height, width)
  return out


# --- trails -----------------------------------------------------------------------------------

def _read_mask_image(path: Path) -> np.ndarray:
  from PIL import Image
  with Image.open(path) as image:
    return np.asarray(image)


def load_mask_folder(path: str | os.PathLike, frame: int) -> np.ndarray:
  """Foreground of input frame `frame` from a folder of per-frame masks (sorted by name).

  Args:
    path: folder of .png (or .jpg) masks, one per input frame, in name order.
    frame: index into the sorted files.

  Returns:
    bool [H, W]: True where any channel > 0.
  """
  files = sorted(p for p in Path(path).iterdir()
                 if p.suffix.lower() in video_lib.IMAGE_SUFFIXES and not p.name.startswith('.'))
  if not files:
    raise FileNotFoundError(f'{path}: no mask images')
  if not 0 <= frame < len(files):
    raise IndexError(f'{path}: frame {frame} outside the {len(files)} masks')
  mask = _read_mask_image(files[frame])
  return mask > 0 if mask.ndim == 2 else np.any(mask > 0, axis=-1)


def count_masks(path: str | os.PathLike) -> int:
  """Number of mask images in a mask folder."""
  return sum(1 for p in Path(path).iterdir()
             if p.suffix.lower() in video_lib.IMAGE_SUFFIXES and not p.name.startswith('.'))


def load_rgba_mask(path: str | os.PathLike) -> np.ndarray:
  """Foreground from an RGBA image: bool [H, W], alpha > 0 (no alpha channel: any channel > 0)."""
  image = _read_mask_image(Path(path))
  if image.ndim == 3 and image.shape[-1] in (2, 4):
    return image[..., -1] > 0
  return image > 0 if image.ndim == 2 else np.any(image > 0, axis=-1)


def _resize_mask(mask: np.ndarray, height: int, width: int) -> np.ndarray:
  if mask.shape == (height, width):
    return mask
  # Nearest keeps the mask binary; masks usually come at the input (pre-resize) resolution.
  return cv2.resize(mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0


def split_by_mask(mask: np.ndarray, query_points: np.ndarray,
                  erode_px: int = MASK_ERODE_PX) -> tuple[np.ndarray, np.ndarray]:
  """Splits query points into foreground and background, away from the mask boundary.

  The foreground mask and its complement are both eroded with a (2 erode_px + 1)^2 square kernel
  (7x7 by default, as the reference), so points near the boundary belong to neither.

  Args:
    mask: bool [H, W] foreground of the query frame, or [T, H, W] per frame (indexed by each
      query's t).
    query_points: float [Q, 3] (t, y, x).
    erode_px: erosion radius in px.

  Returns:
    (foreground, background): bool [Q] each, disjoint.
  """
  mask = np.asarray(mask, bool)
  query_points = np.asarray(query_points, np.float64).reshape(-1, 3)
  masks = mask[None] if mask.ndim == 2 else mask
  kernel = np.ones((2 * erode_px + 1,) * 2, np.uint8)
  height, width = masks.shape[1:]
  frame = np.clip(np.round(query_points[:, 0]).astype(int), 0, len(masks) - 1)
  if mask.ndim == 2:
    frame = np.zeros_like(frame)
  ys = np.clip(np.round(query_points[:, 1]).astype(int), 0, height - 1)
  xs = np.clip(np.round(query_points[:, 2]).astype(int), 0, width - 1)
  foreground = np.zeros(len(query_points), bool)
  background = np.zeros(len(query_points), bool)
  for t in np.unique(frame):
    fg = cv2.erode(masks[t].astype(np.uint8), kernel) > 0
    bg = cv2.erode((~masks[t]).astype(np.uint8), kernel) > 0
    rows = frame == t
    foreground[rows] = fg[ys[rows], xs[rows]]
    background[rows] = bg[ys[rows], xs[rows]]
  return foreground, background


def foreground_from_mask(mask: np.ndarray, query_points: np.ndarray,
                         erode_px: int = MASK_ERODE_PX) -> np.ndarray:
  """bool [Q]: queries inside the eroded foreground mask (see `split_by_mask`)."""
  return split_by_mask(mask, query_points, erode_px)[0]


def background_motion(tracks: np.ndarray, occluded: np.ndarray | None, background: np.ndarray,
                      reference_frame: int) -> np.ndarray:
  """Median camera motion of every frame relative to `reference_frame`.

  m[t] = median over background points visible at both t and reference_frame of
  (track[t] - track[reference_frame]). Frames with no such point fall back to all background
  points, then to 0.

  Args:
    tracks: float [Q, T, 2] (x, y) px.
    occluded: bool [Q, T] or None (all visible).
    background: bool [Q] background points.
    reference_frame: frame index.

  Returns:
    float64 [T, 2] (dx, dy) px.
  """
  tracks = np.asarray(tracks, np.float64)
  bg = tracks[np.asarray(background, bool)]
  motion = np.zeros((tracks.shape[1], 2))
  if len(bg) == 0:
    return motion
  diffs = bg - bg[:, reference_frame:reference_frame + 1]  # [Qb, T, 2]
  if occluded is None:
    visible = np.ones(bg.shape[:2], bool)
  else:
    occ = np.asarray(occluded, bool)[np.asarray(background, bool)]
    visible = ~occ & ~occ[:, reference_frame:reference_frame + 1]
  visible &= np.all(np.isfinite(diffs), -1)
  for t in range(tracks.shape[1]):
    rows = visible[:, t]
    if not rows.any():
      rows = np.all(np.isfinite(diffs[:, t]), -1)
    if rows.any():
      motion[t] = np.median(diffs[rows, t], axis=0)
  return motion


def stabilized_tracks(tracks: np.ndarray, occluded: np.ndarray | None, background: np.ndarray,
                      reference_frame: int) -> np.ndarray:
  """Tracks with the camera motion taken out, expressed in `reference_frame`'s view.

  track[t] - m[t] with m = `background_motion(..., reference_frame)`: a point that moves with the
  background stays where it is in the reference frame, and at t = reference_frame nothing moves.

  Returns:
    float64 [Q, T, 2] (x, y) px.
  """
  motion = background_motion(tracks, occluded, background, reference_frame)
  return np.asarray(tracks, np.float64) - motion[None]


def trail_opacity(age: int, window: int) -> float:
  """Opacity of a trail segment `age` frames old in a tail drawn over `window` frames.

  max(1 - 0.9 age / (window * 0.99), 0.1). The reference uses window = i + 1 at frame i (the whole
  history); here window = min(i, tail_length) + 1, which is the same until the tail is full and
  keeps the fade spanning the tail afterwards.
  """
  return max(1.0 - TRAIL_FADE * age / (window * TRAIL_FADE_DENOM), TRAIL_MIN_OPACITY)


def draw_trails(frames: np.ndarray, tracks: np.ndarray, occluded: np.ndarray, *,
                foreground: np.ndarray | None = None, background: np.ndarray | None = None,
                tail_length: int = DEFAULT_TAIL_LENGTH, radius: float | None = None,
                colors: np.ndarray | None = None) -> np.ndarray:
  """Foreground points with fading tails over the past frames, camera motion taken out.

  At frame i the tail joins the positions of frames max(0, i - tail_length) .. i, each moved by
  `stabilized_tracks(..., reference_frame=i)` when a background exists, so the tail shows the
  point's motion relative to the background while its head stays on the point. Segment
  (t, t + 1) has opacity `trail_opacity(i - t, ...)` and is drawn only where both ends are
  visible; the head is a dot where the point is visible at i.

  Args:
    frames: uint8 [T, H, W, 3] RGB.
    tracks: float [Q, T, 2] (x, y) px.
    occluded: bool [Q, T].
    foreground: bool [Q] points to draw; None draws all points without stabilisation.
    background: bool [Q] points that give the camera motion; None = ~foreground (only used when
      foreground is given).
    tail_length: number of past frames in a tail.
    radius: head dot radius in px; None = `default_radius`. Tails are max(1, radius // 2) thick.
    colors: uint8 [Q_fg, 3] RGB per drawn point; None = jet over the point index.

  Returns:
    uint8 [T, H, W, 3].
  """
  frames, tracks, occluded = _check_tracks(frames, tracks, occluded)
  num_frames, height, width, _ = frames.shape
  radius = default_radius(height, width) if radius is None else radius
  thickness = max(1, int(radius) // 2)
  if foreground is None:
    drawn = np.ones(len(tracks), bool)
    background = np.zeros(len(tracks), bool)
  else:
    drawn = np.asarray(foreground, bool)
    background = ~drawn if background is None else np.asarray(background, bool)
  points = np.flatnonzero(drawn)
  if colors is None:
    colors = index_colors(len(points))
  colors = [_as_color(c) for c in np.asarray(colors)]
  visible = ~occluded
  out = np.empty_like(frames)
  for i in range(num_frames):
    # Positions of the drawn points in frame i's view (identity without background points).
    positions = (stabilized_tracks(tracks, occluded, background, i)
                 if background.any() else tracks)[points]
    canvas = frames[i].astype(np.float32)
    start = max(0, i - tail_length)
    window = i - start + 1
    for t in range(start, i):  # Oldest first, so newer segments end up on top.
      alpha = trail_opacity(i - t, window)
      layer = np.zeros((height, width, 3), np.uint8)
      coverage = np.zeros((height, width), np.uint8)
      for k, q in enumerate(points):
        if visible[q, t] and visible[q, t + 1]:
          _draw_line(layer, positions[k, t], positions[k, t + 1], colors[k], height, width,
                     thickness)
          _draw_line(coverage, positions[k, t], positions[k, t + 1], 255, height, width,
                     thickness)
      # `layer` holds colour x antialiasing coverage; blend it over the canvas with `alpha`.
      weight = (alpha / 255.0) * coverage.astype(np.float32)[..., None]
      canvas = canvas * (1.0 - weight) + alpha * layer.astype(np.float32)
    frame = np.clip(np.round(canvas), 0, 255).astype(np.uint8)
    for k, q in enumerate(points):
      if visible[q, i]:
        _draw_dot(frame, positions[k, i], radius, colors[k], height, width)
    out[i] = frame
  return out


# --- depth, layout, GT --------------------------------------------------------------------------

def depth_range(depth: np.ndarray, percentiles=DEPTH_PERCENTILES) -> tuple[float, float]:
  """Robust (vmin, vmax) over all finite values of `depth` (any shape); (0, 1) if none."""
  values = np.asarray(depth, np.float64)
  values = values[np.isfinite(values)]
  if values.size == 0:
    return 0.0, 1.0
  vmin, vmax = np.percentile(values, percentiles)
  return float(vmin), float(vmax)


def colorize_depth(depth: np.ndarray, vmin: float | None = None, vmax: float | None = None,
                   colormap: str = DEPTH_COLORMAP) -> np.ndarray:
  """Pseudo-depth [N, H, W] -> uint8 RGB [N, H, W, 3] with ONE colour range for the whole video.

  Convention: near (small depth, the camera is at z = 0) is the warm (red) end of turbo, far is
  the cold (blue) end. The range defaults to the 1st..99th percentiles over all frames (robust to
  a few stray pixels); values outside are clipped to the end colours, non-finite values are black.
  One range for every frame keeps colours comparable over time, so surface ordering is visible.

  Args:
    depth: float [N, H, W] (or [H, W]) pseudo-depth.
    vmin, vmax: the depths mapped to the nearest / farthest colour; None = robust percentiles.
    colormap: matplotlib colormap name.

  Returns:
    uint8 [N, H, W, 3] (or [H, W, 3]).
  """
  depth = np.asarray(depth, np.float64)
  low, high = depth_range(depth)
  vmin = low if vmin is None else float(vmin)
  vmax = high if vmax is None else float(vmax)
  span = vmax - vmin if vmax > vmin else 1.0
  finite = np.isfinite(depth)
  normalized = np.where(finite, (depth - vmin) / span, 0.0)
  out = _colormap(colormap, 1.0 - np.clip(normalized, 0.0, 1.0))  # 1 - x: near = warm.
  out[~finite] = 0
  return out


def side_by_side(*videos: np.ndarray, separator_px: int = SEPARATOR_PX) -> np.ndarray:
  """Concatenates uint8 [T, H, W_i, 3] videos left to right with white separators.

  Returns:
    uint8 [T, H, sum W_i + separator_px (n - 1), 3].
  """
  if not videos:
    raise ValueError('side_by_side needs at least one video')
  videos = [np.asarray(v, np.uint8) for v in videos]
  num_frames, height = videos[0].shape[:2]
  for v in videos:
    if v.ndim != 4 or v.shape[:2] != (num_frames, height) or v.shape[-1] != 3:
      raise ValueError(f'all videos must be [T={num_frames}, H={height}, W, 3]; got {v.shape}')
  separator = np.full((num_frames, height, separator_px, 3), SEPARATOR_VALUE, np.uint8)
  parts = []
  for k, v in enumerate(videos):
    if k:
      parts.append(separator)
    parts.append(v)
  return np.concatenate(parts, axis=2)


def draw_gt_comparison(frames: np.ndarray, pred_tracks: np.ndarray, pred_occ: np.ndarray,
                       gt_tracks: np.ndarray, gt_occ: np.ndarray, query_points: np.ndarray, *,
                       radius: float | None = None,
                       error_max_px: float | None = None) -> np.ndarray:
  """Predicted vs ground-truth tracks with the error visible.

  Per point and frame:
    * both visible: white ring at the GT, a line GT -> prediction and a filled dot at the
      prediction, both coloured by the error |pred - gt| (green 0 px .. red >= error_max_px);
    * GT visible, predicted occluded (missed): white ring at the GT, magenta 'x' at the prediction;
    * GT occluded, predicted visible (false positive): magenta dot at the prediction;
    * both occluded: small grey 'x' at the prediction.

  Args:
    frames: uint8 [T, H, W, 3].
    pred_tracks, gt_tracks: float [Q, T, 2] (x, y) px.
    pred_occ, gt_occ: bool [Q, T].
    query_points: float [Q, 3] (t, y, x); the query frame itself is drawn like any other frame.
    radius: marker radius px; None = `default_radius`.
    error_max_px: error at which the colour saturates; None = 16 px scaled from a 256 px raster to
      max(H, W) (the largest TAP-Vid threshold).

  Returns:
    uint8 [T, H, W, 3].
  """
  frames, pred_tracks, pred_occ = _check_tracks(frames, pred_tracks, pred_occ)
  _, gt_tracks, gt_occ = _check_tracks(frames, gt_tracks, gt_occ)
  del query_points  # Same interface as draw_tracks; colours here encode the error instead.
  _, height, width, _ = frames.shape
  radius = default_radius(height, width) if radius is None else radius
  if error_max_px is None:
    error_max_px = ERROR_MAX_PX_AT_256 * max(height, width) / TAPVID_RASTER
  error = np.linalg.norm(pred_tracks - gt_tracks, axis=-1)
  error_colors = _colormap(ERROR_COLORMAP, np.nan_to_num(error / error_max_px, nan=1.0))
  out = frames.astype(np.uint8, copy=True)
  for t in range(out.shape[0]):
    frame = out[t]
    for q in range(pred_tracks.shape[0]):
      pred, gt = pred_tracks[q, t], gt_tracks[q, t]
      if not gt_occ[q, t] and not pred_occ[q, t]:
        color = _as_color(error_colors[q, t])
        _draw_ring(frame, gt, radius + 1, GT_RING_COLOR, height, width)
        _draw_line(frame, gt, pred, color, height, width)
        _draw_dot(frame, pred, radius, color, height, width)
      elif not gt_occ[q, t]:
        _draw_ring(frame, gt, radius + 1, GT_RING_COLOR, height, width)
        _draw_cross(frame, pred, radius, OCCLUSION_MISMATCH_COLOR, height, width)
      elif not pred_occ[q, t]:
        _draw_dot(frame, pred, radius, OCCLUSION_MISMATCH_COLOR, height, width)
      else:
        _draw_cross(frame, pred, max(1, radius // 2), BOTH_OCCLUDED_COLOR, height, width)
  return out


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float = DEFAULT_FPS) -> Path:
  """Writes uint8 [T, H, W, 3] to `path` atomically; odd H / W get one black row / column."""
  frames = np.asarray(frames, np.uint8)
  pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
  if pad_h or pad_w:
    # yuv420p (what browsers play) needs even sizes; mediapy would switch to yuv444p instead.
    frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)))
  return video_lib.save_video(path, frames, fps)


def write_png(path: str | os.PathLike, image: np.ndarray) -> Path:
  """Writes uint8 RGB [H, W, 3] as PNG via a temp file + os.replace."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f'.{path.name}.tmp.png')
  ok = cv2.imwrite(str(tmp), cv2.cvtColor(np.asarray(image, np.uint8), cv2.COLOR_RGB2BGR))
  if not ok:
    raise OSError(f'{path}: cannot write PNG')
  os.replace(tmp, path)
  return path


# --- workdir ------------------------------------------------------------------------------------

def thin_points(query_points: np.ndarray, grid_step: float) -> np.ndarray:
  """Indices of at most one query per (frame, grid_step x grid_step px cell), in query order."""
  query_points = np.asarray(query_points, np.float64).reshape(-1, 3)
  cells = np.stack([np.round(query_points[:, 0]),
                    np.floor(query_points[:, 1] / grid_step),
                    np.floor(query_points[:, 2] / grid_step)], -1)
  _, first = np.unique(cells, axis=0, return_index=True)
  return np.sort(first)


def _auto_thin(query_points: np.ndarray, height: int, width: int, max_points: int,
               grid_step: float | None) -> np.ndarray:
  """Point subset for drawing: `grid_step` thinning if given, else thinning to ~max_points."""
  num = len(query_points)
  if grid_step is not None:
    return thin_points(query_points, grid_step)
  if num <= max_points:
    return np.arange(num)
  step = float(np.sqrt(height * width / max_points))
  keep = thin_points(query_points, step)
  while len(keep) > max_points:  # Queries from several frames: widen the cells.
    step *= 1.25
    keep = thin_points(query_points, step)
  return keep


def load_frames(workdir: str | os.PathLike) -> tuple[np.ndarray, np.ndarray] | None:
  """(frames uint8 [N, H, W, 3], frame_indices int [N]) of workdir/sequence.npz, or None.

  Reads only these two members of the .npz (not the flows).
  """
  path = Path(workdir) / 'sequence.npz'
  if not path.exists():
    return None
  with np.load(path, allow_pickle=False) as data:
    frames = np.asarray(data['frames'], np.uint8)
    indices = (np.asarray(data['frame_indices']) if 'frame_indices' in data.files
               else np.arange(len(frames)))
  return frames, indices


def _input_scale(workdir: Path, frames: np.ndarray) -> tuple[float, float]:
  """(sx, sy) model px per input px: tracks files are in the INPUT video's px, frames are not."""
  from omnimotion_jax.data import store  # pylint: disable=g-import-not-at-top
  return store.input_scale(store.read_meta(workdir / 'sequence.npz') or {}, frames.shape[1:3])


def _tracks_to_model(tracks: np.ndarray, query_points: np.ndarray | None, sx: float, sy: float):
  """Input px -> model px for tracks [..., 2] (x, y) and optional queries [Q, 3] (t, y, x)."""
  from omnimotion_jax.data import store  # pylint: disable=g-import-not-at-top
  tracks = store.rescale_xy(tracks, sx, sy).astype(np.float64)
  if query_points is not None:
    query_points = store.rescale_tyx(query_points, sx, sy).astype(np.float64)
  return tracks, query_points


def _workdir_mask(workdir: Path, query_points: np.ndarray, frame_indices: np.ndarray,
                  height: int, width: int) -> np.ndarray | None:
  """Foreground bool [T, H, W] (only query frames filled) from masks/ or mask.png, or None."""
  num_frames = len(frame_indices)
  query_frames = np.unique(np.clip(np.round(query_points[:, 0]).astype(int), 0, num_frames - 1))
  folder, rgba = workdir / 'masks', workdir / 'mask.png'
  masks = np.zeros((num_frames, height, width), bool)
  try:
    if folder.is_dir() and count_masks(folder):
      # One mask per model frame: index directly; otherwise one per input frame.
      per_model_frame = count_masks(folder) == num_frames
      for t in query_frames:
        index = int(t) if per_model_frame else int(frame_indices[t])
        masks[t] = _resize_mask(load_mask_folder(folder, index), height, width)
      return masks
    if rgba.exists():
      masks[query_frames] = _resize_mask(load_rgba_mask(rgba), height, width)
      return masks
  except (OSError, IndexError, ValueError) as error:
    log.warning('foreground mask not used: %s', error)
  return None


def _save(outputs: dict, report: Path, name: str, frames: np.ndarray, fps: float) -> None:
  outputs[name] = write_video(report / f'{name}.mp4', frames, fps)
  write_png(report / f'{name}{POSTER_SUFFIX}', frames[len(frames) // 2])


def render_outputs(workdir: str | os.PathLike, *, fps: float = DEFAULT_FPS,
                   grid_step: float | None = None) -> dict[str, Path]:
  """Writes the videos of a workdir under workdir/report/, for the inputs that exist.

  Produces (each with a poster PNG report/<name>.png, the middle frame):
    tracks.mp4        (sequence.npz + tracks.npz) `draw_tracks`;
    trails.mp4        (sequence.npz + tracks.npz) `draw_trails`, foreground from masks/ or
                      mask.png when present (camera motion taken out), else all points;
    depth.mp4         (depth.npy) `colorize_depth`;
    side_by_side.mp4  (sequence.npz + tracks.npz and/or depth.npy) input | tracks | depth;
    gt_comparison.mp4 (sequence.npz + tracks.npz + gt.npz) `draw_gt_comparison`.

  Args:
    workdir: the run folder.
    fps: frame rate of the videos.
    grid_step: draw at most one query per grid_step px cell; None thins dense tracks to about
      MAX_DRAWN_POINTS (MAX_TRAIL_POINTS for trails) and keeps sparse ones.

  Returns:
    {name: path} of the videos written.
  """
  workdir = Path(workdir)
  report = workdir / 'report'
  report.mkdir(parents=True, exist_ok=True)
  outputs: dict[str, Path] = {}
  loaded = load_frames(workdir)
  frames, frame_indices = loaded if loaded is not None else (None, None)

  depth_video = None
  if (workdir / 'depth.npy').exists():
    depth = np.load(workdir / 'depth.npy')
    depth_video = colorize_depth(depth)
    if frames is not None and depth_video.shape[1:3] != frames.shape[1:3]:
      depth_video = np.stack([cv2.resize(d, (frames.shape[2], frames.shape[1]),
                                         interpolation=cv2.INTER_NEAREST) for d in depth_video])
    _save(outputs, report, 'depth', depth_video, fps)
    if frames is not None and len(depth_video) != len(frames):
      log.warning('depth.npy has %d frames, sequence.npz %d: depth left out of side_by_side',
                  len(depth_video), len(frames))
      depth_video = None

  tracks_video = None
  tracks_path = workdir / 'tracks.npz'
  if frames is not None and tracks_path.exists():
    with np.load(tracks_path) as data:
      tracks = np.asarray(data['tracks'], np.float64)
      occluded = np.asarray(data['occluded'], bool)
      query_points = np.asarray(data['query_points'], np.float64)
    sx, sy = _input_scale(workdir, frames)
    tracks, query_points = _tracks_to_model(tracks, query_points, sx, sy)
    if tracks.shape[1] != len(frames):
      log.warning('tracks.npz has %d frames, sequence.npz %d: no track videos',
                  tracks.shape[1], len(frames))
    else:
      _, height, width, _ = frames.shape
      keep = _auto_thin(query_points, height, width, MAX_DRAWN_POINTS, grid_step)
      tracks_video = draw_tracks(frames, tracks[keep], occluded[keep], query_points[keep])
      _save(outputs, report, 'tracks', tracks_video, fps)

      mask = _workdir_mask(workdir, query_points, frame_indices, height, width)
      if mask is not None:
        foreground, background = split_by_mask(mask, query_points)
      else:
        foreground, background = np.ones(len(query_points), bool), np.zeros(len(query_points), bool)
      # Thin only the drawn (foreground) points; background points just feed the camera median.
      fg_rows = np.flatnonzero(foreground)
      fg_rows = fg_rows[_auto_thin(query_points[fg_rows], height, width, MAX_TRAIL_POINTS,
                                   grid_step)]
      bg_rows = np.flatnonzero(background)
      if len(bg_rows) > MAX_BACKGROUND_POINTS:
        bg_rows = bg_rows[np.linspace(0, len(bg_rows) - 1, MAX_BACKGROUND_POINTS).astype(int)]
      rows = np.concatenate([fg_rows, bg_rows])
      is_fg = np.zeros(len(rows), bool)
      is_fg[:len(fg_rows)] = True
      trails = draw_trails(frames, tracks[rows], occluded[rows], foreground=is_fg,
                           background=~is_fg if mask is not None else None)
      _save(outputs, report, 'trails', trails, fps)

      gt_path = workdir / 'gt.npz'
      eval_path = workdir / EVAL_TRACKS_FILE
      if gt_path.exists():
        with np.load(gt_path) as data:
          gt_tracks = np.asarray(data['target_points'], np.float64)
          gt_occ = np.asarray(data['occluded'], bool)
        gt_tracks, _ = _tracks_to_model(gt_tracks, None, sx, sy)
        if eval_path.exists():
          # The run tracked a grid for display and the ground-truth queries separately.
          with np.load(eval_path) as data:
            tracks = np.asarray(data['tracks'], np.float64)
            occluded = np.asarray(data['occluded'], bool)
            query_points = np.asarray(data['query_points'], np.float64)
          tracks, query_points = _tracks_to_model(tracks, query_points, sx, sy)
          keep = _auto_thin(query_points, height, width, MAX_DRAWN_POINTS, grid_step)
        if gt_tracks.shape != tracks.shape:
          log.warning('gt.npz target_points %s do not match tracks %s: no GT comparison',
                      gt_tracks.shape, tracks.shape)
        else:
          comparison = draw_gt_comparison(frames, tracks[keep], occluded[keep], gt_tracks[keep],
                                          gt_occ[keep], query_points[keep])
          _save(outputs, report, 'gt_comparison', comparison, fps)

  if frames is not None and (tracks_video is not None or depth_video is not None):
    panels = [frames] + [v for v in (tracks_video, depth_video) if v is not None]
    _save(outputs, report, 'side_by_side', side_by_side(*panels), fps)
  return outputs
