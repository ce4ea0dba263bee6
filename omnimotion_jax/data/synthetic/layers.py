"""Layers of a synthetic video: photo textures, soft masks, camera and object motion."""

import dataclasses
import functools
from collections.abc import Sequence

import cv2
import numpy as np
from skimage import data as skdata

from omnimotion_jax.errors import UserInputError

# Photos shipped inside scikit-image (no network). Left out: `cat` (the same photo as `chelsea`),
# and photos that are mostly flat or dark (rocket, moon, clock, cell, hubble_deep_field, retina,
# colorwheel), where flow has nothing to hold on to.
BACKGROUND_PHOTOS = ('astronaut', 'coffee', 'chelsea', 'immunohistochemistry', 'brick', 'gravel',
                     'grass', 'coins')
FOREGROUND_PHOTOS = ('astronaut', 'coffee', 'chelsea', 'immunohistochemistry', 'coins', 'camera',
                     'page', 'brick', 'gravel', 'grass')
# Grey photos get a random colour gain per channel in this range, so layers differ in colour.
GREY_TINT_RANGE = (0.55, 1.15)
# Crop size relative to the largest crop that fits: random down to this fraction, but never
# upsampled by more than MAX_UPSAMPLE (blurry textures give flow nothing to hold on to).
MIN_CROP_FRACTION = 0.35
MAX_UPSAMPLE = 1.3
TEXTURE_TRIES = 3
# Light blur of every texture (px): photos are band-limited like camera footage, and bilinear
# resampling at a sub-pixel offset then changes colours only slightly.
TEXTURE_BLUR_SIGMA = 0.6

# Camera motion (scaled by camera_scale): total pan as a fraction of min(H, W), roll (rad) and
# log-zoom change over the video, and a small sinusoidal shake.
CAMERA_PAN_RANGE = (0.08, 0.22)
CAMERA_ROLL_MAX = 0.08
CAMERA_LOG_ZOOM_MAX = 0.2
CAMERA_BASE_LOG_ZOOM = (0.0, 0.15)  # >= 0: slightly magnified, canvas px ~ frame px
CAMERA_SHAKE = 0.015  # fraction of min(H, W)
# Canvas margin (px) beyond the furthest frame corner, so the background always covers the frame.
CANVAS_MARGIN = 3.0

# Foreground objects.
OBJECT_DIAMETER_RANGE = (0.3, 0.55)  # fraction of min(H, W)
OBJECT_ASPECT_RANGE = (0.55, 1.0)
OBJECT_PAD = 4  # px of zero alpha around each object's canvas
EDGE_SOFTNESS = 1.5  # px width of the soft alpha ramp at object boundaries
POLYGON_VERTICES = (6, 11)
POLYGON_RADIUS_RANGE = (0.75, 1.0)
POLYGON_ANGLE_JITTER = 0.3  # fraction of the mean angle between vertices
FILLPOLY_SHIFT = 4  # fixed-point bits of cv2.fillPoly vertices: 1/16 px
MASK_KINDS = ('ellipse', 'polygon')
# Per-object motion (scaled by motion_scale).
DRIFT_RANGE = (0.2, 0.45)  # fraction of min(H, W) travelled over the video
WOBBLE = 0.03  # sinusoidal wobble amplitude, fraction of min(H, W)
ROTATION_MAX = 0.8  # rad over the video
LOG_SCALE_WOBBLE_MAX = 0.12
LOG_SCALE_TREND_MAX = 0.15
# Object path kinds: 'drift' stays mostly in view, 'cross' passes through the frame from one
# side to the other, 'exit_return' leaves the frame through an edge and comes back.
PATH_KINDS = ('drift', 'cross', 'exit_return')
# 'exit_return' is fully outside while sin^2(pi t) >= this (the middle ~20% of the video).
EXIT_FRACTION = 0.9
# motion_scale at or above this makes 'exit_return' leave and return twice, if the video is long
# enough that this stays below ~10 px/frame.
DOUBLE_EXIT_MOTION_SCALE = 1.75
DOUBLE_EXIT_MIN_FRAMES = 40


# ---------------------------------------------------------------------------------------------
# Affine helpers. An affine is a [..., 2, 3] float64 array acting on (x, y) px: q = A[:, :2] p + b.


def _similarity(scale: np.ndarray, angle: np.ndarray, pivot: np.ndarray,
                centre: np.ndarray) -> np.ndarray:
  """[T, 2, 3] affines q = scale * R(angle) (p - pivot) + centre; scale, angle [T], centre [T,2]."""
  cos, sin = np.cos(angle) * scale, np.sin(angle) * scale
  linear = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)  # [T, 2, 2]
  offset = centre - np.einsum('tij,j->ti', linear, pivot)
  return np.concatenate([linear, offset[..., None]], -1)


def _compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Affine a o b (apply b first), broadcasting over leading dims."""
  linear = a[..., :2, :2] @ b[..., :2, :2]
  offset = (a[..., :2, :2] @ b[..., :2, 2:])[..., 0] + a[..., :2, 2]
  return np.concatenate([linear, offset[..., None]], -1)


def invert_affine(a: np.ndarray) -> np.ndarray:
  """Inverse affine, broadcasting over leading dims."""
  linear = np.linalg.inv(a[..., :2, :2])
  offset = -(linear @ a[..., :2, 2:])[..., 0]
  return np.concatenate([linear, offset[..., None]], -1)


def apply_affine(a: np.ndarray, points: np.ndarray) -> np.ndarray:
  """Applies affines a [..., 2, 3] to points [..., 2] (x, y) (same leading dims)."""
  return np.einsum('...ij,...j->...i', a[..., :2, :2], points) + a[..., :2, 2]


# --- Textures and masks ---


@functools.lru_cache(maxsize=None)
def _photo(name: str) -> np.ndarray:
  """A scikit-image photo as read-only RGB uint8 [H, W, 3] (grey photos are repeated)."""
  image = np.asarray(getattr(skdata, name)())
  if image.ndim == 2:
    image = np.repeat(image[..., None], 3, axis=-1)
  image = np.ascontiguousarray(image[..., :3].astype(np.uint8))
  image.setflags(write=False)
  return image


def _texture_energy(texture: np.ndarray) -> float:
  """Mean gradient magnitude of the luminance: how much a flow method has to hold on to."""
  grey = texture.mean(-1)
  return float(np.abs(np.diff(grey, axis=0)).mean() + np.abs(np.diff(grey, axis=1)).mean())


def _texture(rng: np.random.Generator, name: str, height: int, width: int) -> np.ndarray:
  """A random crop of photo `name` resized to float32 RGB [height, width, 3] in [0, 255].

  The most textured of TEXTURE_TRIES random crops is kept: flat patches (sky, walls) exist in
  real footage too, but a whole layer without texture measures nothing but interpolation.
  """
  photo = _photo(name)
  photo_h, photo_w = photo.shape[:2]
  # Largest crop with the target aspect ratio, then a random fraction of it.
  fit = min(photo_h / height, photo_w / width)
  lowest = min(fit, max(MIN_CROP_FRACTION * fit, 1.0 / MAX_UPSAMPLE))
  best, best_energy = None, -1.0
  for _ in range(TEXTURE_TRIES):
    crop_scale = rng.uniform(lowest, fit)
    crop_h = min(photo_h, max(2, int(round(height * crop_scale))))
    crop_w = min(photo_w, max(2, int(round(width * crop_scale))))
    top = int(rng.integers(0, photo_h - crop_h + 1))
    left = int(rng.integers(0, photo_w - crop_w + 1))
    crop = photo[top:top + crop_h, left:left + crop_w]
    interpolation = cv2.INTER_AREA if crop_h > height else cv2.INTER_CUBIC  # down / up
    candidate = cv2.resize(crop, (width, height), interpolation=interpolation)
    energy = _texture_energy(candidate.astype(np.float32))
    if energy > best_energy:
      best, best_energy = candidate, energy
  texture = best.astype(np.float32)
  if rng.random() < 0.5:  # mirror for variety
    texture = texture[:, ::-1]
  if (photo == photo[..., :1]).all():  # a grey photo
    texture = texture * rng.uniform(*GREY_TINT_RANGE, size=3).astype(np.float32)
  texture = cv2.GaussianBlur(np.ascontiguousarray(texture), (0, 0), TEXTURE_BLUR_SIGMA)
  return np.clip(texture, 0.0, 255.0)


def _object_alpha(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
  """A soft ellipse or star-shaped polygon alpha [height, width] float32, zero on the border."""
  kind = MASK_KINDS[int(rng.integers(len(MASK_KINDS)))]
  cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
  ax, ay = (width - 1) / 2.0 - OBJECT_PAD, (height - 1) / 2.0 - OBJECT_PAD
  if kind == 'ellipse':
    y, x = np.mgrid[:height, :width].astype(np.float64)
    rho = np.sqrt(((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2)
    # Distance to the boundary in px is about (1 - rho) * semi-axis; a linear ramp across it.
    alpha = np.clip((1.0 - rho) * min(ax, ay) / EDGE_SOFTNESS + 0.5, 0.0, 1.0)
    return alpha.astype(np.float32)
  num = int(rng.integers(POLYGON_VERTICES[0], POLYGON_VERTICES[1] + 1))
  # Evenly spread angles with jitter: a star-shaped polygon that fills its box reasonably.
  angles = (np.arange(num) + rng.uniform(-POLYGON_ANGLE_JITTER, POLYGON_ANGLE_JITTER, num)
            + rng.uniform(0, 1)) * (2 * np.pi / num)
  radii = rng.uniform(*POLYGON_RADIUS_RANGE, num)
  # Keep the soft edge inside the padded canvas.
  shrink = 1.0 - 2.0 * EDGE_SOFTNESS / min(ax, ay)
  xs = cx + ax * shrink * radii * np.cos(angles)
  ys = cy + ay * shrink * radii * np.sin(angles)
  vertices = np.round(np.stack([xs, ys], -1) * (1 << FILLPOLY_SHIFT)).astype(np.int32)
  mask = np.zeros((height, width), np.float32)
  cv2.fillPoly(mask, [vertices], 1.0, lineType=cv2.LINE_AA, shift=FILLPOLY_SHIFT)
  return cv2.GaussianBlur(mask, (0, 0), EDGE_SOFTNESS / 2.0)


# --- Motion ---


def _camera(rng: np.random.Generator, num_frames: int, height: int, width: int,
            camera_scale: float) -> tuple[np.ndarray, tuple[int, int]]:
  """Background affines [T, 2, 3] (canvas px -> frame px) and the canvas (height, width).

  The canvas is sized so that the frame never sees beyond it (CANVAS_MARGIN px to spare).
  """
  t = np.linspace(0.0, 1.0, num_frames)
  size = min(height, width)
  pan_dir = rng.uniform(0, 2 * np.pi)
  pan = camera_scale * rng.uniform(*CAMERA_PAN_RANGE) * size
  shake_phase = rng.uniform(0, 2 * np.pi, 2)
  shake_freq = rng.uniform(0.5, 1.5, 2)
  offset = (pan * (t - 0.5))[:, None] * np.array([np.cos(pan_dir), np.sin(pan_dir)])
  offset = offset + camera_scale * CAMERA_SHAKE * size * np.sin(
      2 * np.pi * shake_freq * t[:, None] + shake_phase)
  roll = camera_scale * rng.uniform(-CAMERA_ROLL_MAX, CAMERA_ROLL_MAX) * (t - 0.5)
  log_zoom = (rng.uniform(*CAMERA_BASE_LOG_ZOOM) +
              camera_scale * rng.uniform(-CAMERA_LOG_ZOOM_MAX, CAMERA_LOG_ZOOM_MAX) * (t - 0.5))
  zoom = np.exp(log_zoom)
  frame_centre = np.array([(width - 1) / 2.0, (height - 1) / 2.0])
  # q = zoom R (p - canvas_centre - offset) + frame_centre. First with canvas_centre = 0, to find
  # how far from the canvas centre the frame corners reach.
  relative = _similarity(zoom, roll, np.zeros(2), frame_centre)
  relative[:, :, 2] -= np.einsum('tij,tj->ti', relative[:, :, :2], offset)
  corners = np.array([[-0.5, -0.5], [width - 0.5, -0.5], [-0.5, height - 0.5],
                      [width - 0.5, height - 0.5]])
  reach = np.abs(apply_affine(invert_affine(relative)[:, None],
                              np.broadcast_to(corners, (num_frames, 4, 2))))
  half = reach.reshape(-1, 2).max(0) + CANVAS_MARGIN
  canvas_w, canvas_h = (int(np.ceil(2 * h)) + 1 for h in half)
  canvas_centre = np.array([(canvas_w - 1) / 2.0, (canvas_h - 1) / 2.0])
  affines = relative.copy()
  affines[:, :, 2] -= np.einsum('tij,j->ti', relative[:, :, :2], canvas_centre)
  return affines, (canvas_h, canvas_w)


def _object_path(rng: np.random.Generator, kind: str, num_frames: int, height: int, width: int,
                 radius: float, motion_scale: float) -> np.ndarray:
  """Designed centre (x, y) px [T, 2] in the mid-video camera view, for path `kind`.

  radius: px, how far the object reaches from its centre (so exits can clear the frame).
  """
  t = np.linspace(0.0, 1.0, num_frames)
  size = min(height, width)
  frame_size = np.array([width, height], np.float64)
  wobble_phase = rng.uniform(0, 2 * np.pi, 2)
  wobble_freq = rng.uniform(0.5, 1.5, 2)
  wobble = motion_scale * WOBBLE * size * np.sin(
      2 * np.pi * wobble_freq * t[:, None] + wobble_phase)
  if kind == 'drift':
    start = rng.uniform(0.2, 0.8, 2) * frame_size
    direction = rng.uniform(0, 2 * np.pi)
    travel = motion_scale * rng.uniform(*DRIFT_RANGE) * size
    end = start + travel * np.array([np.cos(direction), np.sin(direction)])
    end = np.clip(end, 0.1 * frame_size, 0.9 * frame_size)
    # A gentle quadratic term: objects speed up or slow down a little.
    ease = t + rng.uniform(-0.3, 0.3) * t * (1 - t)
    return start + (end - start) * ease[:, None] + wobble
  axis = int(rng.integers(2))  # 0: moves along x, 1: along y
  sign = 1.0 if rng.random() < 0.5 else -1.0
  along, across = frame_size[axis], frame_size[1 - axis]
  centre = np.zeros((num_frames, 2))
  centre[:, 1 - axis] = rng.uniform(0.25, 0.75) * across
  if kind == 'cross':
    # The centre runs from just outside one edge to just outside the opposite one, at constant
    # speed: the object slides in, crosses, and slides out.
    first, last = -0.2 * radius, along - 1 + 0.2 * radius
    if sign < 0:
      first, last = last, first
    centre[:, axis] = first + (last - first) * t
    return centre + wobble
  if kind == 'exit_return':
    # Start inside near the edge we exit through; out and back along the axis.
    inset = rng.uniform(0.2, 0.35) * along
    start = inset if sign < 0 else along - 1 - inset
    distance = inset + radius + CANVAS_MARGIN
    double = motion_scale >= DOUBLE_EXIT_MOTION_SCALE and num_frames >= DOUBLE_EXIT_MIN_FRAMES
    exits = 2 if double else 1
    bump = np.sin(np.pi * exits * t) ** 2 / EXIT_FRACTION
    centre[:, axis] = start + sign * distance * bump
    return centre + wobble
  raise UserInputError(f'unknown path kind {kind!r}; choose from {PATH_KINDS}')


@dataclasses.dataclass
class Layer:
  """A layer; its colour lands where `affines` maps its own px, with opacity `alpha`."""
  texture: np.ndarray  # [h, w, 3] float32, 0..255
  alpha: np.ndarray  # [h, w] float32, 0..1
  affines: np.ndarray  # [T, 2, 3] float64, layer px -> frame px


def build_layers(rng: np.random.Generator, num_frames: int, height: int, width: int,
                 paths: Sequence[str], motion_scale: float, camera_scale: float) -> list[Layer]:
  """The background layer, then one object layer per entry of `paths`, back to front."""
  camera, (canvas_h, canvas_w) = _camera(rng, num_frames, height, width, camera_scale)
  background_name = BACKGROUND_PHOTOS[int(rng.integers(len(BACKGROUND_PHOTOS)))]
  layers = [Layer(_texture(rng, background_name, canvas_h, canvas_w),
                  np.ones((canvas_h, canvas_w), np.float32), camera)]
  pool = [name for name in FOREGROUND_PHOTOS if name != background_name]
  names = rng.choice(len(pool), size=len(paths), replace=len(paths) > len(pool))
  # Objects move in the world: designed in the mid-video view, then seen through the camera,
  # so a still object pans with the background.
  view_to_world = invert_affine(camera[num_frames // 2])
  # How far the camera moves the frame centre relative to mid-video (px): exits must clear it.
  frame_centre = np.array([(width - 1) / 2.0, (height - 1) / 2.0])
  camera_drift = np.linalg.norm(apply_affine(_compose(camera, view_to_world), frame_centre) -
                                frame_centre, axis=-1).max()
  size = min(height, width)
  t = np.linspace(0.0, 1.0, num_frames)
  for kind, name in zip(paths, names):
    diameter = rng.uniform(*OBJECT_DIAMETER_RANGE) * size
    aspect = rng.uniform(*OBJECT_ASPECT_RANGE)
    obj_w, obj_h = diameter, diameter * aspect
    if rng.random() < 0.5:
      obj_w, obj_h = obj_h, obj_w
    layer_w = int(round(obj_w)) + 2 * OBJECT_PAD
    layer_h = int(round(obj_h)) + 2 * OBJECT_PAD
    alpha = _object_alpha(rng, layer_h, layer_w)
    texture = _texture(rng, pool[int(name)], layer_h, layer_w)
    log_scale = (motion_scale * rng.uniform(-LOG_SCALE_TREND_MAX, LOG_SCALE_TREND_MAX) * (t - 0.5)
                 + min(motion_scale, 2.0) * rng.uniform(0, LOG_SCALE_WOBBLE_MAX) *
                 np.sin(2 * np.pi * rng.uniform(0.3, 1.0) * t + rng.uniform(0, 2 * np.pi)))
    scale = np.exp(log_scale)
    angle = (rng.uniform(-np.pi, np.pi) +
             motion_scale * rng.uniform(-ROTATION_MAX, ROTATION_MAX) * t)
    radius = 0.5 * np.hypot(layer_w, layer_h) * scale.max() * np.exp(CAMERA_LOG_ZOOM_MAX)
    centre = _object_path(rng, kind, num_frames, height, width, radius + camera_drift,
                          motion_scale)
    pivot = np.array([(layer_w - 1) / 2.0, (layer_h - 1) / 2.0])
    in_view = _similarity(scale, angle, pivot, centre)
    affines = _compose(camera, _compose(view_to_world, in_view))
    layers.append(Layer(texture, alpha, affines))
  return layers

