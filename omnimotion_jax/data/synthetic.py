"""Procedural synthetic videos with exact ground-truth point tracks (TAP-Vid layout).

No real tracking data set can be downloaded here, so tracking quality is measured on videos whose
ground truth is known exactly. Each video is a stack of layers, back to front:

  * layer 0, the background: a photo from `skimage.data` on a canvas larger than the frame, seen
    through a smooth camera pan / zoom / roll (a similarity warp of the canvas);
  * layers 1..L, the foreground objects: photo textures cut out by a soft ellipse or a soft
    polygon, each moving with a smooth similarity motion (translation, rotation and scale are
    sinusoids / low-order polynomials of t) on top of the camera motion. Some cross the frame,
    some leave it and come back; they occlude each other and the background.

The depth order is fixed: a higher layer index is always in front. Layer l maps its own pixel
coordinates p to frame pixels with the 2x3 affine `affines[l, t]`: q = A @ [p, 1]. Each frame is
rendered by inverse-warping every layer with cv2.warpAffine (bilinear, WARP_INVERSE_MAP with the
exact float64 inverse) and compositing back to front with premultiplied alpha.

Conventions:
  * Pixels: integer coordinates are pixel centres, x is the column and y the row, the frame
    spans [-0.5, W - 0.5] x [-0.5, H - 0.5]. This is cv2.warpAffine's own convention, so the
    forward affine of a layer point is exactly where its colour lands (float-exact with the
    installed OpenCV 5 on float32 images; older builds quantise sub-pixel positions to 1/32 px).
  * Tracks `target_points` are (x, y) px [N, T, 2]; queries are (t, y, x) [Q, 3], as in TAP-Vid.
  * A track is occluded at frame t iff its point is outside [0, W-1] x [0, H-1] (the hull of
    pixel centres, where bilinear sampling is defined), or its own layer's alpha there is < 0.5,
    or some layer in front has alpha > 0.5 there. Alphas are sampled exactly (float64 bilinear
    in each layer's own coordinates), not from the rendered 8-bit video.
  * Track points are only sampled where their own layer is solid (alpha >= SOLID_ALPHA), and
    every track is visible in at least one frame.

Everything random comes from `np.random.default_rng(seed)`, so a video is bit-for-bit
reproducible from its seed (on a given OpenCV build).
"""

import dataclasses
import functools
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
from skimage import data as skdata

from omnimotion_jax import fileio
from omnimotion_jax.errors import UserInputError

# ---------------------------------------------------------------------------------------------
# Argument limits.
MIN_FRAMES = 2
MIN_SIZE = 32  # px; below this the objects (a fraction of the frame) have almost no texture.
MAX_SIZE = 2048  # px; a guard against typos, far above anything a CPU tracker would see.
MAX_LAYERS = 8  # foreground layers
DEFAULT_NUM_TRACKS = 256  # as in TAP-Vid Kubric evaluation
DEFAULT_NUM_FRAMES = 32
DEFAULT_SIZE = 128
MIN_LAYERS_RANDOM, MAX_LAYERS_RANDOM = 2, 5  # range drawn when num_layers is None

# Query sampling (TAP-Vid): 'strided' queries every track visible at frames 0, 5, 10, ...
QUERY_STRIDE = 5

# Occlusion and sampling thresholds on alpha.
OCCLUSION_ALPHA = 0.5
# Tracks start only where their own layer is fully opaque, so their colour is the layer's own.
SOLID_ALPHA = 0.99

# Background share of the tracks; the rest is split evenly over the foreground layers.
BACKGROUND_TRACK_FRACTION = 0.4
# Candidate points drawn per requested track (rejection sampling of solid, visible points).
CANDIDATES_PER_TRACK = 16
MIN_CANDIDATES = 256

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

# Preview rendering.
PREVIEW_FPS = 10
PREVIEW_DOT_RADIUS = 2
PREVIEW_PALETTE = ((255, 255, 255), (255, 64, 64), (64, 255, 64), (64, 128, 255), (255, 255, 0),
                   (255, 0, 255), (0, 255, 255), (255, 160, 0), (160, 0, 255))


# ---------------------------------------------------------------------------------------------
# Suites.


@dataclasses.dataclass(frozen=True)
class VideoSpec:
  """Arguments of one `make_video` call, with a short description."""
  name: str
  seed: int
  num_frames: int
  height: int
  width: int
  num_layers: int | None = None
  num_tracks: int = DEFAULT_NUM_TRACKS
  motion_scale: float = 1.0
  camera_scale: float = 1.0
  paths: tuple[str, ...] | None = None

  def kwargs(self) -> dict:
    """Keyword arguments for `make_video`."""
    out = dataclasses.asdict(self)
    del out['name']
    return out


SUITES: dict[str, list[VideoSpec]] = {
    # The reference suite: 8 videos, 24-48 frames, 128-256 px, from camera-only-plus-one-object
    # to five objects, slow to fast, with crossings, exits and re-entries.
    'synthetic-v1': [
        VideoSpec('pan-one-object-slow', 1001, 32, 128, 128, num_layers=1, motion_scale=0.6,
                  camera_scale=1.0, paths=('drift',)),
        VideoSpec('pan-zoom-one-object-fast', 1002, 24, 160, 160, num_layers=1, motion_scale=2.0,
                  camera_scale=1.5, paths=('cross',)),
        VideoSpec('three-crossing', 1003, 40, 192, 192, num_layers=3, motion_scale=1.0,
                  camera_scale=0.5, paths=('cross', 'cross', 'drift')),
        VideoSpec('static-camera-two-objects', 1004, 32, 144, 192, num_layers=2,
                  motion_scale=1.0, camera_scale=0.0, paths=('drift', 'exit_return')),
        VideoSpec('five-objects', 1005, 48, 256, 256, num_layers=5, motion_scale=1.0,
                  camera_scale=1.0),
        VideoSpec('exit-reenter', 1006, 48, 128, 160, num_layers=3, motion_scale=1.0,
                  camera_scale=0.8, paths=('exit_return', 'exit_return', 'drift')),
        VideoSpec('fast-clutter', 1007, 24, 128, 192, num_layers=4, motion_scale=2.0,
                  camera_scale=1.0),
        VideoSpec('slow-zoom', 1008, 36, 176, 176, num_layers=2, motion_scale=0.5,
                  camera_scale=1.5, paths=('drift', 'drift')),
    ],
    # CPU-friendly: 4 videos of 24 frames, 96-128 px.
    'synthetic-mini': [
        VideoSpec('mini-pan-one-object', 2001, 24, 96, 96, num_layers=1, camera_scale=1.0,
                  paths=('drift',)),
        VideoSpec('mini-exit-reenter', 2002, 24, 128, 128, num_layers=2, camera_scale=0.7,
                  paths=('drift', 'exit_return')),
        VideoSpec('mini-three-objects', 2003, 24, 96, 128, num_layers=3, motion_scale=1.5,
                  camera_scale=1.0),
        VideoSpec('mini-static-crossing', 2004, 24, 128, 96, num_layers=2, camera_scale=0.0,
                  paths=('cross', 'cross')),
    ],
}


def _suite_specs(name: str) -> list[VideoSpec]:
  if name not in SUITES:
    raise UserInputError(f'unknown synthetic suite {name!r}; choose one of {sorted(SUITES)}')
  return SUITES[name]


def make_suite(name: str) -> Iterator[dict]:
  """Yields the videos of suite `name` in order (each as returned by `make_video`).

  A generator, so only one video is in memory at a time; use list(make_suite(name)) for all.
  Each sample also has 'name' (the spec's name, a str).
  """
  specs = _suite_specs(name)
  for index in range(len(specs)):
    yield suite_video(name, index)


def suite_video(name: str, index: int) -> dict:
  """Video `index` of suite `name` (see `make_video`), with its spec's 'name' added."""
  specs = _suite_specs(name)
  if not 0 <= index < len(specs):
    raise UserInputError(f'suite {name!r} has videos 0..{len(specs) - 1}, not {index}; '
                         'pass an index in that range')
  spec = specs[index]
  sample = make_video(**spec.kwargs())
  sample['name'] = spec.name
  return sample


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


def _invert(a: np.ndarray) -> np.ndarray:
  """Inverse affine, broadcasting over leading dims."""
  linear = np.linalg.inv(a[..., :2, :2])
  offset = -(linear @ a[..., :2, 2:])[..., 0]
  return np.concatenate([linear, offset[..., None]], -1)


def _apply(a: np.ndarray, points: np.ndarray) -> np.ndarray:
  """Applies affines a [..., 2, 3] to points [..., 2] (x, y) (same leading dims)."""
  return np.einsum('...ij,...j->...i', a[..., :2, :2], points) + a[..., :2, 2]


def _bilinear(image: np.ndarray, points: np.ndarray) -> np.ndarray:
  """Samples a 2D image at points [..., 2] (x, y), pixel centres at integers, zero outside.

  Zero padding matches cv2.BORDER_CONSTANT with value 0, which the renderer uses for alphas.
  """
  height, width = image.shape
  padded = np.pad(image.astype(np.float64), 1)
  x = points[..., 0] + 1.0
  y = points[..., 1] + 1.0
  inside = (x >= 0) & (x <= width + 1) & (y >= 0) & (y <= height + 1)
  x = np.clip(x, 0, width + 1)
  y = np.clip(y, 0, height + 1)
  x0 = np.minimum(np.floor(x).astype(np.int64), width)
  y0 = np.minimum(np.floor(y).astype(np.int64), height)
  fx, fy = x - x0, y - y0
  top = padded[y0, x0] * (1 - fx) + padded[y0, x0 + 1] * fx
  bottom = padded[y0 + 1, x0] * (1 - fx) + padded[y0 + 1, x0 + 1] * fx
  return np.where(inside, top * (1 - fy) + bottom * fy, 0.0)


# ---------------------------------------------------------------------------------------------
# Textures and masks.


@functools.lru_cache(maxsize=None)
def _photo(name: str) -> np.ndarray:
  """A scikit-image photo as read-only RGB uint8 [H, W, 3] (grey photos are repeated)."""
  image = np.asarray(getattr(skdata, name)())
  if image.ndim == 2:
    image = np.repeat(image[..., None], 3, axis=-1)
  image = np.ascontiguousarray(image[..., :3].astype(np.uint8))
  image.setflags(write=False)
  return image


def _is_grey(image: np.ndarray) -> bool:
  return bool(np.array_equal(image[..., 0], image[..., 1]) and
              np.array_equal(image[..., 0], image[..., 2]))


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
    downsampling = crop_h > height
    interpolation = cv2.INTER_AREA if downsampling else cv2.INTER_CUBIC
    candidate = cv2.resize(crop, (width, height), interpolation=interpolation)
    energy = _texture_energy(candidate.astype(np.float32))
    if energy > best_energy:
      best, best_energy = candidate, energy
  texture = best.astype(np.float32)
  if rng.random() < 0.5:  # mirror for variety
    texture = texture[:, ::-1]
  if _is_grey(photo):
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


# ---------------------------------------------------------------------------------------------
# Motion.


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
  reach = np.abs(_apply(_invert(relative)[:, None], np.broadcast_to(corners, (num_frames, 4, 2))))
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
class _Layer:
  texture: np.ndarray  # [h, w, 3] float32, 0..255
  alpha: np.ndarray  # [h, w] float32, 0..1
  affines: np.ndarray  # [T, 2, 3] float64, layer px -> frame px


def _build_layers(rng: np.random.Generator, num_frames: int, height: int, width: int,
                  paths: Sequence[str], motion_scale: float, camera_scale: float) -> list[_Layer]:
  camera, (canvas_h, canvas_w) = _camera(rng, num_frames, height, width, camera_scale)
  background_name = BACKGROUND_PHOTOS[int(rng.integers(len(BACKGROUND_PHOTOS)))]
  layers = [_Layer(_texture(rng, background_name, canvas_h, canvas_w),
                   np.ones((canvas_h, canvas_w), np.float32), camera)]
  pool = [name for name in FOREGROUND_PHOTOS if name != background_name]
  names = rng.choice(len(pool), size=len(paths), replace=len(paths) > len(pool))
  # Objects move in the world: designed in the mid-video view, then seen through the camera,
  # so a still object pans with the background.
  mid = num_frames // 2
  view_to_world = _invert(camera[mid])
  # How far the camera moves the frame centre relative to mid-video (px): exits must clear it.
  frame_centre = np.array([(width - 1) / 2.0, (height - 1) / 2.0])
  camera_drift = np.linalg.norm(_apply(_compose(camera, view_to_world), frame_centre) -
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
    layers.append(_Layer(texture, alpha, affines))
  return layers


# ---------------------------------------------------------------------------------------------
# Rendering and ground truth.


def _render(layers: list[_Layer], num_frames: int, height: int, width: int,
            keep_alphas: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
  """Renders the layers, back to front.

  Returns:
    video uint8 [T, H, W, 3]; foreground coverage float32 [T, H, W] = 1 - prod(1 - alpha) over
    layers 1..; and, if keep_alphas, every layer's rendered alpha float32 [L, T, H, W] (else None).
  """
  video = np.zeros((num_frames, height, width, 3), np.float32)
  clear = np.ones((num_frames, height, width), np.float32)  # prod(1 - alpha) over objects
  alphas = np.zeros((len(layers), num_frames, height, width), np.float32) if keep_alphas else None
  flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
  for index, layer in enumerate(layers):
    # Premultiplied RGBA: resampling premultiplied colour keeps soft edges free of fringes.
    rgba = np.concatenate([layer.texture * layer.alpha[..., None], layer.alpha[..., None]], -1)
    inverse = _invert(layer.affines)
    for t in range(num_frames):
      warped = cv2.warpAffine(rgba, inverse[t], (width, height), flags=flags,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)
      alpha = warped[..., 3]
      video[t] = video[t] * (1.0 - alpha[..., None]) + warped[..., :3]
      if index > 0:
        clear[t] *= 1.0 - alpha
      if keep_alphas:
        alphas[index, t] = alpha
  return np.clip(np.rint(video), 0, 255).astype(np.uint8), 1.0 - clear, alphas


def _front_alpha(layers: list[_Layer], positions: np.ndarray, layer_id: np.ndarray) -> np.ndarray:
  """Max alpha [N, T] of the layers in front of each track at its positions [N, T, 2]."""
  front = np.zeros(positions.shape[:2])
  for index in range(1, len(layers)):
    behind = layer_id < index
    if not behind.any():
      continue
    inverse = _invert(layers[index].affines)  # [T, 2, 3]
    local = _apply(inverse[None], positions[behind])
    front[behind] = np.maximum(front[behind], _bilinear(layers[index].alpha, local))
  return front


def _in_frame(positions: np.ndarray, height: int, width: int) -> np.ndarray:
  x, y = positions[..., 0], positions[..., 1]
  return (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)


def _occlusion(layers: list[_Layer], positions: np.ndarray, local: np.ndarray,
               layer_id: np.ndarray, height: int, width: int) -> np.ndarray:
  """Occluded [N, T] for tracks at frame positions [N, T, 2] with layer points local [N, 2]."""
  own = np.array([_bilinear(layers[l].alpha, p[None])[0] for l, p in zip(layer_id, local)])
  return (~_in_frame(positions, height, width)
          | (own[:, None] < OCCLUSION_ALPHA)
          | (_front_alpha(layers, positions, layer_id) > OCCLUSION_ALPHA))


def _sample_tracks(rng: np.random.Generator, layers: list[_Layer], num_tracks: int,
                   num_frames: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
  """Layer points [N, 2] (in their layer's px) and layer ids [N] for N <= num_tracks tracks.

  Candidates are uniform over (frame, solid point of the layer) and kept where visible at that
  frame, so a point's chance grows with how long it is visible, and every track is visible at
  least once.
  """
  num_fg = len(layers) - 1
  quota = np.zeros(len(layers), np.int64)
  quota[0] = num_tracks if num_fg == 0 else int(round(BACKGROUND_TRACK_FRACTION * num_tracks))
  if num_fg:
    rest = num_tracks - quota[0]
    quota[1:] = rest // num_fg
    quota[1:1 + rest % num_fg] += 1
  pools = []
  for index, layer in enumerate(layers):
    count = max(MIN_CANDIDATES, CANDIDATES_PER_TRACK * int(quota[index]))
    # Uniform over the layer's solid area (a random solid pixel plus sub-pixel jitter) and time.
    solid_pixels = np.argwhere(layer.alpha >= SOLID_ALPHA)[:, ::-1]  # (x, y)
    if len(solid_pixels) == 0:
      pools.append(np.zeros((0, 2)))
      continue
    local = (solid_pixels[rng.integers(0, len(solid_pixels), count)]
             + rng.uniform(-0.5, 0.5, (count, 2)))
    t0 = rng.integers(0, num_frames, count)
    pixel = _apply(layer.affines[t0], local)
    # Visible at t0: solid, inside the frame, and no layer in front is opaque there.
    front = np.zeros(count)
    for other in range(index + 1, len(layers)):
      other_local = _apply(_invert(layers[other].affines[t0]), pixel)
      front = np.maximum(front, _bilinear(layers[other].alpha, other_local))
    keep = ((_bilinear(layer.alpha, local) >= SOLID_ALPHA) & _in_frame(pixel, height, width)
            & (front <= OCCLUSION_ALPHA))
    pools.append(local[keep])
  # Give each layer its quota; layers short of candidates hand their share to the others.
  take = np.minimum(quota, [len(pool) for pool in pools])
  spare = num_tracks - take.sum()
  for index in range(len(layers)):
    extra = min(spare, len(pools[index]) - take[index])
    take[index] += extra
    spare -= extra
  local = np.concatenate([pool[:n] for pool, n in zip(pools, take)])
  layer_id = np.concatenate([np.full(n, i, np.int32) for i, n in enumerate(take)])
  order = rng.permutation(len(layer_id))  # mix layers, as in TAP-Vid
  return local[order], layer_id[order]


def sample_queries_first(occluded: np.ndarray, target_points: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray]:
  """TAP-Vid 'first' queries (tapvid.queries): each visible track's first visible frame.

  Returns:
    query_points float32 [N1, 3] (t, y, x) and trackgroup int32 [N1], in track order.
  """
  from omnimotion_jax.tapvid import queries as tapvid_queries  # Lazy: tapvid imports this module.
  out = tapvid_queries.sample_queries_first(occluded, target_points)
  return out['query_points'][0], np.nonzero((~occluded).any(1))[0].astype(np.int32)


def sample_queries_strided(occluded: np.ndarray, target_points: np.ndarray,
                           stride: int = QUERY_STRIDE) -> tuple[np.ndarray, np.ndarray]:
  """TAP-Vid 'strided' queries (tapvid.queries): at frames 0, stride, ... every visible track.

  Returns:
    query_points float32 [N2, 3] (t, y, x), ordered by frame then track, and trackgroup int32 [N2].
  """
  from omnimotion_jax.tapvid import queries as tapvid_queries  # Lazy: tapvid imports this module.
  out = tapvid_queries.sample_queries_strided(occluded, target_points, query_stride=stride)
  return out['query_points'][0], out['trackgroup'][0].astype(np.int32)


# ---------------------------------------------------------------------------------------------
# Public API.


def _check_args(num_frames, height, width, num_layers, num_tracks, motion_scale, camera_scale,
                paths) -> None:
  if not isinstance(num_frames, (int, np.integer)) or num_frames < MIN_FRAMES:
    raise UserInputError(f'frames={num_frames!r} is too few; pass at least {MIN_FRAMES} frames')
  for label, value in (('height', height), ('width', width)):
    if not isinstance(value, (int, np.integer)) or not MIN_SIZE <= value <= MAX_SIZE:
      raise UserInputError(f'{label}={value!r} px is out of range; pass a size between '
                           f'{MIN_SIZE} and {MAX_SIZE} px')
  if num_layers is not None and not (isinstance(num_layers, (int, np.integer))
                                     and 0 <= num_layers <= MAX_LAYERS):
    raise UserInputError(f'num_layers={num_layers!r} is out of range; pass 0..{MAX_LAYERS} '
                         'foreground layers, or None for a random 2..5')
  if not isinstance(num_tracks, (int, np.integer)) or num_tracks < 1:
    raise UserInputError(f'num_tracks={num_tracks!r} is invalid; pass a positive integer')
  for label, value in (('motion_scale', motion_scale), ('camera_scale', camera_scale)):
    if not np.isfinite(value) or value < 0:
      raise UserInputError(f'{label}={value!r} is invalid; pass a finite value >= 0')
  if paths is not None:
    bad = [p for p in paths if p not in PATH_KINDS]
    if bad:
      raise UserInputError(f'unknown path kinds {bad}; choose from {PATH_KINDS}')
    if num_layers is not None and num_layers != len(paths):
      raise UserInputError(f'num_layers={num_layers} but {len(paths)} paths were given; pass '
                           'one path per foreground layer (or leave num_layers=None)')
    if len(paths) > MAX_LAYERS:
      raise UserInputError(f'{len(paths)} paths is too many; pass at most {MAX_LAYERS}')


def make_video(seed: int, num_frames: int = DEFAULT_NUM_FRAMES, height: int = DEFAULT_SIZE,
               width: int = DEFAULT_SIZE, num_layers: int | None = None,
               num_tracks: int = DEFAULT_NUM_TRACKS, *, motion_scale: float = 1.0,
               camera_scale: float = 1.0, paths: Sequence[str] | None = None,
               return_layer_alphas: bool = False) -> dict:
  """Renders a layered synthetic video with exact ground-truth tracks.

  Args:
    seed: the only source of randomness (np.random.default_rng(seed)).
    num_frames: T >= 2.
    height, width: frame size in px.
    num_layers: foreground layers L (the background is extra); None draws 2..5 (or len(paths)).
    num_tracks: N, tracks requested; fewer only if the layers offer too few solid visible points.
      About 40% are on the background, the rest split evenly over the objects.
    motion_scale: multiplies object motion (travel, wobble, rotation, scale change); 1 is
      moderate (~1-4 px/frame at 128 px and 32 frames), 2 is fast.
    camera_scale: multiplies camera pan, roll, zoom and shake; 0 is a static camera.
    paths: one of PATH_KINDS per foreground layer ('drift', 'cross', 'exit_return'); None draws
      them at random, with one 'exit_return' whenever there are >= 2 objects.
    return_layer_alphas: also return 'layer_alphas' float32 [L + 1, T, H, W], the rendered
      alpha of every layer in [0, 1], background first (for checks and visualisation).

  Returns:
    A dict (TAP-Vid layout, pixel units):
      video: uint8 [T, H, W, 3].
      target_points: float32 [N, T, 2], (x, y) px, integer values at pixel centres.
      occluded: bool [N, T].
      query_points_first: float32 [N1, 3] (t, y, x); trackgroup_first: int32 [N1].
      query_points_strided: float32 [N2, 3] (t, y, x); trackgroup_strided: int32 [N2].
      masks: bool [T, H, W], foreground: 1 - prod(1 - alpha) over the object layers > 0.5.
      layer_id: int32 [N], 0 = background, higher = nearer the camera.
      layer_points: float64 [N, 2], each track's point in its layer's own px.
      affines: float64 [L + 1, T, 2, 3], layer px -> frame px per layer and frame.
      seed, num_layers (L): int.
  """
  _check_args(num_frames, height, width, num_layers, num_tracks, motion_scale, camera_scale,
              paths)
  rng = np.random.default_rng(seed)
  if paths is None:
    if num_layers is None:
      num_layers = int(rng.integers(MIN_LAYERS_RANDOM, MAX_LAYERS_RANDOM + 1))
    paths = [PATH_KINDS[int(i)] for i in rng.integers(len(PATH_KINDS), size=num_layers)]
    if num_layers >= 2 and 'exit_return' not in paths:
      paths[int(rng.integers(num_layers))] = 'exit_return'
  paths = tuple(paths)
  num_layers = len(paths)
  layers = _build_layers(rng, num_frames, height, width, paths, motion_scale, camera_scale)
  video, foreground, alphas = _render(layers, num_frames, height, width, return_layer_alphas)

  local, layer_id = _sample_tracks(rng, layers, num_tracks, num_frames, height, width)
  affines = np.stack([layer.affines for layer in layers])  # [L + 1, T, 2, 3]
  positions = _apply(affines[layer_id], local[:, None])  # [N, T, 2]
  occluded = _occlusion(layers, positions, local, layer_id, height, width)
  target_points = positions.astype(np.float32)
  queries_first, group_first = sample_queries_first(occluded, target_points)
  queries_strided, group_strided = sample_queries_strided(occluded, target_points)
  sample = {
      'video': video,
      'target_points': target_points,
      'occluded': occluded,
      'query_points_first': queries_first,
      'trackgroup_first': group_first,
      'query_points_strided': queries_strided,
      'trackgroup_strided': group_strided,
      'masks': foreground > OCCLUSION_ALPHA,
      'layer_id': layer_id.astype(np.int32),
      'layer_points': local,
      'affines': affines,
      'seed': int(seed),
      'num_layers': int(num_layers),
  }
  if return_layer_alphas:
    sample['layer_alphas'] = alphas
  return sample


# Keys that load back as Python scalars.
_SCALAR_KEYS = {'seed': int, 'num_layers': int, 'name': str}
_REQUIRED_KEYS = ('video', 'target_points', 'occluded', 'query_points_first',
                  'query_points_strided', 'trackgroup_strided')


def _publish(tmp: str, path: Path) -> None:
  """Gives a finished temp file the usual permissions (mkstemp makes 0600) and moves it in place."""
  umask = os.umask(0)
  os.umask(umask)
  os.chmod(tmp, 0o666 & ~umask)
  os.replace(tmp, path)


def save_video_npz(sample: dict, path: str | os.PathLike) -> None:
  """Writes a sample (as from `make_video`) to a compressed .npz, atomically.

  The data goes to a temporary file in the same folder first, then os.replace moves it into
  place, so readers never see a half-written file.
  """
  path = Path(path)
  if path.is_dir():
    raise UserInputError(f'{path} is a folder; pass a file path ending in .npz')
  path.parent.mkdir(parents=True, exist_ok=True)
  fileio.write_npz_atomic(path, {key: np.asarray(value) for key, value in sample.items()},
                          compressed=True)


def load_video_npz(path: str | os.PathLike) -> dict:
  """Reads a sample written by `save_video_npz` (arrays as saved; seed etc. as Python scalars)."""
  path = Path(path)
  if not path.is_file():
    raise UserInputError(f'{path} does not exist; create it with `omnimotion-jax synth`')
  try:
    with np.load(path, allow_pickle=False) as npz:
      sample = {key: npz[key] for key in npz.files}
  except (OSError, ValueError) as error:
    raise UserInputError(f'{path} is not a readable .npz ({error}); regenerate it with '
                         '`omnimotion-jax synth`') from None
  missing = [key for key in _REQUIRED_KEYS if key not in sample]
  if missing:
    raise UserInputError(f'{path} lacks {missing}; it is not a synthetic video, regenerate it '
                         'with `omnimotion-jax synth`')
  for key, cast in _SCALAR_KEYS.items():
    if key in sample:
      sample[key] = cast(sample[key].item())
  return sample


def preview_frames(sample: dict) -> np.ndarray:
  """The video uint8 [T, H, W, 3] with visible ground-truth points drawn, coloured by layer."""
  frames = np.array(sample['video'])
  points = sample['target_points']
  visible = ~sample['occluded']
  layer_id = sample['layer_id']
  for t in range(frames.shape[0]):
    frame = np.ascontiguousarray(frames[t])
    for n in np.nonzero(visible[:, t])[0]:
      colour = PREVIEW_PALETTE[int(layer_id[n]) % len(PREVIEW_PALETTE)]
      centre = tuple(int(round(v)) for v in points[n, t])
      cv2.circle(frame, centre, PREVIEW_DOT_RADIUS, colour, -1, lineType=cv2.LINE_AA)
    frames[t] = frame
  return frames


def synth_command(seed: int, out: str | os.PathLike, frames: int = DEFAULT_NUM_FRAMES,
                  height: int = DEFAULT_SIZE, width: int = DEFAULT_SIZE,
                  preview: bool = False) -> dict:
  """`omnimotion-jax synth`: writes one synthetic video to `out` (.npz), and maybe a preview.

  Args:
    seed: video seed.
    out: output .npz path (parent folders are created).
    frames, height, width: video size.
    preview: also write `out` with suffix .mp4: the video with visible GT points drawn.

  Returns:
    {'npz': Path, 'preview': Path | None, 'num_tracks': int, 'num_frames': int}.
  """
  out = Path(out)
  if out.suffix != '.npz':
    raise UserInputError(f'--out {out} must end in .npz; pass e.g. --out video.npz')
  sample = make_video(seed, frames, height, width)
  save_video_npz(sample, out)
  preview_path = None
  if preview:
    import imageio_ffmpeg  # pylint: disable=g-import-not-at-top
    import mediapy  # pylint: disable=g-import-not-at-top
    mediapy.set_ffmpeg(imageio_ffmpeg.get_ffmpeg_exe())
    preview_path = out.with_suffix('.mp4')
    # Same atomic pattern as the .npz; the temp name keeps .mp4 so ffmpeg picks the container.
    handle, tmp = tempfile.mkstemp(prefix=f'.{preview_path.stem}.', suffix='.mp4',
                                   dir=out.parent)
    os.close(handle)
    try:
      mediapy.write_video(tmp, preview_frames(sample), fps=PREVIEW_FPS)
      _publish(tmp, preview_path)
    except BaseException:
      if os.path.exists(tmp):
        os.remove(tmp)
      raise
  return {'npz': out, 'preview': preview_path, 'num_tracks': int(len(sample['layer_id'])),
          'num_frames': int(frames)}
