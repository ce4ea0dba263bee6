"""Tracking with a fitted model: query points through all frames, dense error maps.

All mapping runs through one jitted function on fixed-size chunks of (pixel, source frame,
target frame) rows; the last chunk is padded, so nothing recompiles. Every row is computed
independently of the others, so a query's track never depends on which other queries are asked
(TAP-Vid requires this).

Conventions: queries are (t, y, x) with (x, y) raster px at the model's resolution (integer =
pixel centre); tracks are (x, y) [Q, T, 2]; occluded [Q, T] bool.
"""

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from omnimotion_jax.model import render
from omnimotion_jax.model.model import OmniMotion


def make_mapper(model: OmniMotion, video: render.VideoShape, occlusion_margin: float,
                use_max_loc: bool = True, with_occlusion: bool = True):
  """Jitted (params, px [C,2], src [C], tgt [C]) -> (px [C,2], depth [C], occlusion score [C]).

  With with_occlusion=False the occlusion pass is skipped and the score is all zeros.
  """

  @jax.jit
  def mapper(params, px, src, tgt):
    out = render.map_pixels(model, params, px, src, tgt, video)
    key = 'max' if use_max_loc else 'mean'
    mapped, depth = out[f'px_{key}'], out[f'depth_{key}']
    if not with_occlusion:
      return mapped, depth, jnp.zeros_like(depth)
    score = render.occlusion_score(model, params, mapped, tgt, depth, video, occlusion_margin)
    return mapped, depth, score

  return mapper


def map_in_chunks(mapper, params, px: np.ndarray, src: np.ndarray, tgt: np.ndarray,
                  chunk_size: int, progress: bool = False, desc: str = 'mapping'):
  """Runs `mapper` over rows in fixed-size chunks (last one padded). Returns numpy arrays."""
  num = px.shape[0]
  outs = []
  starts = range(0, num, chunk_size)
  for start in tqdm(starts, desc=desc, disable=not progress, unit='chunk', leave=False):
    stop = min(start + chunk_size, num)
    pad = chunk_size - (stop - start)
    sl = lambda a: np.concatenate([a[start:stop], np.repeat(a[stop - 1:stop], pad, 0)]) if pad \
        else a[start:stop]
    res = mapper(params, jnp.asarray(sl(px), jnp.float32), jnp.asarray(sl(src), jnp.int32),
                 jnp.asarray(sl(tgt), jnp.int32))
    outs.append([np.asarray(r)[:stop - start] for r in res])
  return [np.concatenate(parts) for parts in zip(*outs)]


def track_queries(mapper, params, queries: np.ndarray, video: render.VideoShape, *,
                  chunk_size: int, occlusion_threshold: float, cycle_threshold: float = 0.0,
                  cycle_threshold_per_frame: float = 0.0, back_mapper=None,
                  progress: bool = True):
  """Tracks query points through every frame.

  Args:
    mapper: from `make_mapper`.
    params: model parameters.
    queries: [Q, 3] (t, y, x) at the model's resolution.
    video: the model's video shape.
    chunk_size: rows per compiled call.
    occlusion_threshold: occluded if the opacity in front of the mapped point exceeds this.
    cycle_threshold: if > 0, also occluded if the surface seen at the predicted px, mapped back
      to the query frame, lands more than this many px from the query (a forward-backward check,
      as for optical flow; not in the reference). It catches points that the model maps onto
      other content, e.g. points that have left the field of view.
    cycle_threshold_per_frame: the threshold grows by this many px per frame of distance from
      the query frame (mapping errors grow with distance; a fixed threshold then calls visible
      far points occluded).
    back_mapper: mapper for that check (`make_mapper(..., with_occlusion=False)` saves work);
      defaults to `mapper`.

  Returns:
    tracks [Q, T, 2] (x, y) px and occluded [Q, T] bool. At the query frame the track is the
    query itself and visible. Points mapped outside the frame are occluded.
  """
  queries = np.asarray(queries, np.float32)
  q, t = queries.shape[0], video.num_frames
  src = np.repeat(np.round(queries[:, 0]).astype(np.int32), t)
  tgt = np.tile(np.arange(t, dtype=np.int32), q)
  px = np.repeat(queries[:, [2, 1]], t, axis=0)
  mapped, _, score = map_in_chunks(mapper, params, px, src, tgt, chunk_size, progress,
                                   desc='tracking')
  tracks = mapped.reshape(q, t, 2)
  occluded = (score > occlusion_threshold).reshape(q, t)
  if cycle_threshold > 0:
    back, _, _ = map_in_chunks(back_mapper or mapper, params, mapped, tgt, src, chunk_size,
                               progress, desc='cycle check')
    threshold = cycle_threshold + cycle_threshold_per_frame * np.abs(tgt - src)
    occluded |= (np.linalg.norm(back - px, axis=-1) > threshold).reshape(q, t)
  outside = ((tracks[..., 0] < 0) | (tracks[..., 0] > video.width - 1)
             | (tracks[..., 1] < 0) | (tracks[..., 1] > video.height - 1))
  occluded = occluded | outside
  at_query = (src == tgt).reshape(q, t)
  tracks = np.where(at_query[..., None], px.reshape(q, t, 2), tracks)
  occluded = np.where(at_query, False, occluded)
  return tracks.astype(np.float32), occluded


def grid_queries(video: render.VideoShape, step: int, frame: int = 0) -> np.ndarray:
  """[Q, 3] (t, y, x) queries on a regular grid every `step` px of `frame` (centred)."""
  ys = np.arange((video.height - 1) % step // 2, video.height, step)
  xs = np.arange((video.width - 1) % step // 2, video.width, step)
  yy, xx = np.meshgrid(ys, xs, indexing='ij')
  return np.stack([np.full(yy.size, frame), yy.ravel(), xx.ravel()], -1).astype(np.float32)


def adjacent_error_maps(mapper, params, flows_adjacent: np.ndarray, video: render.VideoShape, *,
                        stride: int, chunk_size: int, blur_ksize: int, progress: bool = False):
  """Hard-mining error maps: |predicted - input| adjacent flow for every frame.

  Args:
    flows_adjacent: [N, H, W, 2] input flow from frame i to i+1 (the last frame: to N-2).
    stride: evaluate every `stride`-th pixel (then nearest-upsample); 1 = every pixel.
    blur_ksize: Gaussian blur kernel size (px) applied to each map (OpenCV's automatic sigma).

  Returns:
    error_map [N, H, W] float32 and frame_error [N] float32 (mean error per frame, px).
  """
  import cv2  # pylint: disable=g-import-not-at-top
  n, h, w = video.num_frames, video.height, video.width
  ys, xs = np.arange(0, h, stride), np.arange(0, w, stride)
  yy, xx = np.meshgrid(ys, xs, indexing='ij')
  px = np.stack([xx.ravel(), yy.ravel()], -1).astype(np.float32)
  m = px.shape[0]
  src = np.repeat(np.arange(n, dtype=np.int32), m)
  tgt = np.where(src < n - 1, src + 1, n - 2).astype(np.int32)
  mapped, _, _ = map_in_chunks(mapper, params, np.tile(px, (n, 1)), src, tgt, chunk_size,
                               progress, desc='error maps')
  pred_flow = mapped.reshape(n, len(ys), len(xs), 2) - px.reshape(1, len(ys), len(xs), 2)
  ref_flow = flows_adjacent[:, ::stride, ::stride].astype(np.float32)
  err = np.linalg.norm(pred_flow - ref_flow, axis=-1)
  frame_error = err.reshape(n, -1).mean(-1)
  up = np.repeat(np.repeat(err, stride, axis=1), stride, axis=2)[:, :h, :w]
  blurred = np.stack([cv2.GaussianBlur(e, (blur_ksize, blur_ksize), 0) for e in up])
  return blurred.astype(np.float32), frame_error.astype(np.float32)


def make_depth_fn(model: OmniMotion, video: render.VideoShape):
  """Jitted (params, px [C,2], frame [C]) -> pseudo-depth [C] (expected local depth)."""

  @jax.jit
  def depth_fn(params, px, frame):
    return (render.pseudo_depth(model, params, px, frame, video),)

  return depth_fn


def depth_maps(depth_fn, params, video: render.VideoShape, frames, *, chunk_size: int,
               stride: int = 1, progress: bool = False) -> np.ndarray:
  """Pseudo-depth maps of the given frame indices, at every `stride`-th pixel (1 = every pixel).

  Returns [F, ceil(H / stride), ceil(W / stride)] float32; entry [f, i, j] is the depth at raster
  px (x, y) = (j * stride, i * stride) of frame frames[f].
  """
  frames = np.asarray(frames, np.int32)
  yy, xx = np.meshgrid(np.arange(0, video.height, stride), np.arange(0, video.width, stride),
                       indexing='ij')
  px = np.stack([xx.ravel(), yy.ravel()], -1).astype(np.float32)
  hw = px.shape[0]
  mapper = lambda p, px, f, _: depth_fn(p, px, f)
  (depth,) = map_in_chunks(mapper, params, np.tile(px, (len(frames), 1)),
                           np.repeat(frames, hw), np.repeat(frames, hw), chunk_size, progress,
                           desc='depth')
  return depth.reshape((len(frames),) + yy.shape)


def upsample_strided(maps: np.ndarray, stride: int, height: int, width: int) -> np.ndarray:
  """Maps sampled at every `stride`-th px (`depth_maps(..., stride)`) -> [F, height, width].

  Bilinear between the samples, which sit at px (j * stride, i * stride); px past the last
  sample take its value. stride 1 returns the maps unchanged.
  """
  maps = np.asarray(maps, np.float32)
  if stride == 1:
    return maps
  ys = np.minimum(np.arange(height) / stride, maps.shape[1] - 1)
  xs = np.minimum(np.arange(width) / stride, maps.shape[2] - 1)
  y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
  y1, x1 = np.minimum(y0 + 1, maps.shape[1] - 1), np.minimum(x0 + 1, maps.shape[2] - 1)
  wy, wx = (ys - y0)[None, :, None], (xs - x0)[None, None, :]
  rows = maps[:, y0] * (1 - wy) + maps[:, y1] * wy
  return (rows[:, :, x0] * (1 - wx) + rows[:, :, x1] * wx).astype(np.float32)
