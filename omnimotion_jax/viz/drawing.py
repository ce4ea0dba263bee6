"""Drawing (numpy + cv2) on uint8 RGB frames [T, H, W, 3]: tracks, trails, depth, GT comparison.

  * Tracks are (x, y) px with integer values at pixel centres (x = column); queries are (t, y, x)
    with t a frame index; occlusion flags are True where occluded.
  * Markers use cv2's fixed-point `shift` (SUBPIXEL_BITS fractional bits): a dot at (10.25, 5.75)
    is centred there, not at the rounded pixel (cv2 also puts pixel centres at integers).
  * Colours are RGB tuples (cv2 writes channels in array order).
"""

import cv2
import numpy as np
from matplotlib import colormaps

SUBPIXEL_BITS = 4  # cv2 `shift`: coordinates carry 1/16 px.
_SUBPIXEL_SCALE = 1 << SUBPIXEL_BITS
# Coordinates further than this many frame sizes outside the frame are not drawn (int overflow).
_FAR_OUTSIDE = 4
MIN_RADIUS = 2  # px; smaller dots are hard to see.
RADIUS_PER_PX = 1.0 / 128  # default radius = this x min(H, W) (2 px at 256 px, as the reference).
SATURATION_MIN = 0.3  # Colour wheel saturation at the frame centre (not white on bright frames).
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
GT_RING_COLOR = (255, 255, 255)
OCCLUSION_MISMATCH_COLOR = (255, 0, 255)  # magenta: predicted and GT occlusion disagree.
BOTH_OCCLUDED_COLOR = (128, 128, 128)
ERROR_COLORMAP = 'RdYlGn_r'  # green = small error, red = large.
ERROR_MAX_PX_AT_256 = 16.0  # Error colour saturates at the largest TAP-Vid threshold, scaled.
TAPVID_RASTER = 256


# --- small helpers ----------------------------------------------------------------------------

def default_radius(height: int, width: int) -> int:
  """Marker radius (px) for frames of size (height, width)."""
  return max(MIN_RADIUS, int(round(min(height, width) * RADIUS_PER_PX)))


def _fixed(frame: np.ndarray, point):
  """(x, y) float px -> cv2 fixed-point int tuple, or None if non-finite / far outside `frame`."""
  x, y = float(point[0]), float(point[1])
  if not (np.isfinite(x) and np.isfinite(y)):
    return None
  height, width = frame.shape[:2]
  if abs(x) > _FAR_OUTSIDE * width or abs(y) > _FAR_OUTSIDE * height:
    return None
  return int(round(x * _SUBPIXEL_SCALE)), int(round(y * _SUBPIXEL_SCALE))


def _colormap(name: str, values: np.ndarray) -> np.ndarray:
  """values in [0, 1] -> uint8 RGB [..., 3] through matplotlib colormap `name`."""
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


def _draw_circle(frame, point, radius, color, thickness=-1) -> None:
  """A filled dot (thickness -1) or a ring of `radius` px centred on `point`."""
  center = _fixed(frame, point)
  if center is not None:
    cv2.circle(frame, center, int(round(radius * _SUBPIXEL_SCALE)), color, thickness, cv2.LINE_AA,
               SUBPIXEL_BITS)


def _draw_cross(frame, point, radius, color, thickness=CROSS_THICKNESS) -> None:
  """An 'x' with half-size `radius` px centred on `point`."""
  center = _fixed(frame, point)
  if center is not None:
    (x, y), r = center, int(round(radius * _SUBPIXEL_SCALE))
    for dy in (r, -r):
      cv2.line(frame, (x - r, y - dy), (x + r, y + dy), color, thickness, cv2.LINE_AA,
               SUBPIXEL_BITS)


def _draw_line(frame, start, end, color, thickness=1) -> None:
  a, b = _fixed(frame, start), _fixed(frame, end)
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
  colors = [_as_color(c) for c in np.asarray(
      position_colors(query_points, height, width) if colors is None else colors)]
  out = frames.astype(np.uint8, copy=True)
  for t, frame in enumerate(out):
    for q in range(len(tracks)):
      if not occluded[q, t]:
        _draw_circle(frame, tracks[q, t], radius, colors[q])
      elif not hide_occluded:
        _draw_cross(frame, tracks[q, t], radius, colors[q])
  return out


# --- trails -----------------------------------------------------------------------------------

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
  background = np.asarray(background, bool)
  bg = tracks[background]
  motion = np.zeros((tracks.shape[1], 2))  # Stays 0 without background points.
  diffs = bg - bg[:, reference_frame:reference_frame + 1]  # [Qb, T, 2]
  finite = np.all(np.isfinite(diffs), -1)
  if occluded is None:
    visible = finite
  else:
    occ = np.asarray(occluded, bool)[background]
    visible = ~occ & ~occ[:, reference_frame:reference_frame + 1] & finite
  for t in range(tracks.shape[1]):
    rows = visible[:, t] if visible[:, t].any() else finite[:, t]
    if rows.any():
      motion[t] = np.median(diffs[rows, t], axis=0)
  return motion


def stabilized_tracks(tracks: np.ndarray, occluded: np.ndarray | None, background: np.ndarray,
                      reference_frame: int) -> np.ndarray:
  """Tracks [Q, T, 2] float64 with the camera motion taken out, in `reference_frame`'s view.

  track[t] - m[t] with m = `background_motion(..., reference_frame)`: a point that moves with the
  background stays where it is in the reference frame, and at t = reference_frame nothing moves.
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
  drawn = np.ones(len(tracks), bool) if foreground is None else np.asarray(foreground, bool)
  background = (np.zeros(len(tracks), bool) if foreground is None
                else ~drawn if background is None else np.asarray(background, bool))
  points = np.flatnonzero(drawn)
  colors = [_as_color(c) for c in np.asarray(
      index_colors(len(points)) if colors is None else colors)]
  visible = ~occluded
  out = np.empty_like(frames)
  for i in range(num_frames):
    # Positions of the drawn points in frame i's view (identity without background points).
    positions = (stabilized_tracks(tracks, occluded, background, i)
                 if background.any() else tracks)[points]
    canvas = frames[i].astype(np.float32)
    start = max(0, i - tail_length)
    for t in range(start, i):  # Oldest first, so newer segments end up on top.
      alpha = trail_opacity(i - t, i - start + 1)
      layer = np.zeros((height, width, 3), np.uint8)
      coverage = np.zeros((height, width), np.uint8)
      for k, q in enumerate(points):
        if visible[q, t] and visible[q, t + 1]:
          _draw_line(layer, positions[k, t], positions[k, t + 1], colors[k], thickness)
          _draw_line(coverage, positions[k, t], positions[k, t + 1], 255, thickness)
      # `layer` holds colour x antialiasing coverage; blend it over the canvas with `alpha`.
      weight = (alpha / 255.0) * coverage.astype(np.float32)[..., None]
      canvas = canvas * (1.0 - weight) + alpha * layer.astype(np.float32)
    out[i] = np.clip(np.round(canvas), 0, 255).astype(np.uint8)
    for k, q in enumerate(points):
      if visible[q, i]:
        _draw_circle(out[i], positions[k, i], radius, colors[k])
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
  return np.concatenate([part for v in videos for part in (separator, v)][1:], axis=2)


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
  for t, frame in enumerate(out):
    for q in range(pred_tracks.shape[0]):
      pred, gt = pred_tracks[q, t], gt_tracks[q, t]
      if not gt_occ[q, t]:
        _draw_circle(frame, gt, radius + 1, GT_RING_COLOR, thickness=1)
      if not gt_occ[q, t] and not pred_occ[q, t]:
        color = _as_color(error_colors[q, t])
        _draw_line(frame, gt, pred, color)
        _draw_circle(frame, pred, radius, color)
      elif not gt_occ[q, t]:
        _draw_cross(frame, pred, radius, OCCLUSION_MISMATCH_COLOR)
      elif not pred_occ[q, t]:
        _draw_circle(frame, pred, radius, OCCLUSION_MISMATCH_COLOR)
      else:
        _draw_cross(frame, pred, max(1, radius // 2), BOTH_OCCLUDED_COLOR)
  return out
