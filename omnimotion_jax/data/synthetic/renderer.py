"""Rendering and exact ground truth of a synthetic video (`make_video`)."""

from collections.abc import Sequence

import cv2
import numpy as np

from omnimotion_jax.data import filtering
from omnimotion_jax.data.synthetic.layers import (PATH_KINDS, Layer, apply_affine, build_layers,
                                                  invert_affine)
from omnimotion_jax.errors import UserInputError
from omnimotion_jax.tapvid import queries

# Argument limits.
MIN_FRAMES = 2
MIN_SIZE = 32  # px; below this the objects (a fraction of the frame) have almost no texture.
MAX_SIZE = 2048  # px; a guard against typos, far above anything a CPU tracker would see.
MAX_LAYERS = 8  # foreground layers
DEFAULT_NUM_TRACKS = 256  # as in TAP-Vid Kubric evaluation
DEFAULT_NUM_FRAMES = 32
DEFAULT_SIZE = 128
MIN_LAYERS_RANDOM, MAX_LAYERS_RANDOM = 2, 5  # range drawn when num_layers is None

# Occlusion and sampling thresholds on alpha.
OCCLUSION_ALPHA = 0.5
# Tracks start only where their own layer is fully opaque, so their colour is the layer's own.
SOLID_ALPHA = 0.99

# Background share of the tracks; the rest is split evenly over the foreground layers.
BACKGROUND_TRACK_FRACTION = 0.4
# Candidate points drawn per requested track (rejection sampling of solid, visible points).
CANDIDATES_PER_TRACK = 16
MIN_CANDIDATES = 256


# --- Rendering and ground truth ---


def _alpha_at(alpha: np.ndarray, points: np.ndarray) -> np.ndarray:
  """Alpha [...] of a layer at points [..., 2] (x, y) in its own px, exact: float64 bilinear.

  Zero outside the layer, as cv2.BORDER_CONSTANT pads the alphas the renderer warps.
  """
  return filtering.bilinear_sample(alpha[..., None], points[..., 0], points[..., 1],
                                   dtype=np.float64)[..., 0]


def _render(layers: list[Layer], num_frames: int, height: int, width: int,
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
    inverse = invert_affine(layer.affines)
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


def _front_alpha(layers: list[Layer], positions: np.ndarray, layer_id: np.ndarray) -> np.ndarray:
  """Max alpha [N, T] of the layers in front of each track at its positions [N, T, 2]."""
  front = np.zeros(positions.shape[:2])
  for index in range(1, len(layers)):
    behind = layer_id < index
    if not behind.any():
      continue
    inverse = invert_affine(layers[index].affines)  # [T, 2, 3]
    local = apply_affine(inverse[None], positions[behind])
    front[behind] = np.maximum(front[behind], _alpha_at(layers[index].alpha, local))
  return front


def _occlusion(layers: list[Layer], positions: np.ndarray, local: np.ndarray,
               layer_id: np.ndarray, height: int, width: int) -> np.ndarray:
  """Occluded [N, T] for tracks at frame positions [N, T, 2] with layer points local [N, 2]."""
  own = np.array([_alpha_at(layers[l].alpha, p[None])[0] for l, p in zip(layer_id, local)])
  return (~filtering.in_frame(positions, height, width)
          | (own[:, None] < OCCLUSION_ALPHA)
          | (_front_alpha(layers, positions, layer_id) > OCCLUSION_ALPHA))


def _sample_tracks(rng: np.random.Generator, layers: list[Layer], num_tracks: int,
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
    pixel = apply_affine(layer.affines[t0], local)
    # Visible at t0: solid, inside the frame, and no layer in front is opaque there.
    front = np.zeros(count)
    for other in range(index + 1, len(layers)):
      other_local = apply_affine(invert_affine(layers[other].affines[t0]), pixel)
      front = np.maximum(front, _alpha_at(layers[other].alpha, other_local))
    keep = ((_alpha_at(layer.alpha, local) >= SOLID_ALPHA) & (front <= OCCLUSION_ALPHA)
            & filtering.in_frame(pixel, height, width))
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


# --- Public API ---


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
  layers = build_layers(rng, num_frames, height, width, paths, motion_scale, camera_scale)
  video, foreground, alphas = _render(layers, num_frames, height, width, return_layer_alphas)

  local, layer_id = _sample_tracks(rng, layers, num_tracks, num_frames, height, width)
  affines = np.stack([layer.affines for layer in layers])  # [L + 1, T, 2, 3]
  positions = apply_affine(affines[layer_id], local[:, None])  # [N, T, 2]
  occluded = _occlusion(layers, positions, local, layer_id, height, width)
  target_points = positions.astype(np.float32)
  first = queries.sample_queries_first(occluded, target_points)
  strided = queries.sample_queries_strided(occluded, target_points)
  sample = {
      'video': video,
      'target_points': target_points,
      'occluded': occluded,
      'query_points_first': first['query_points'][0],
      'trackgroup_first': np.nonzero((~occluded).any(1))[0].astype(np.int32),  # visible tracks
      'query_points_strided': strided['query_points'][0],
      'trackgroup_strided': strided['trackgroup'][0].astype(np.int32),
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


