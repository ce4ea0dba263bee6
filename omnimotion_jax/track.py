"""Tracking with fitted parameters: query points through all frames, pseudo-depth maps.

All mapping runs through one jitted function (render.make_mapper) on fixed-size chunks of
(pixel, source frame, target frame) rows; the last chunk is padded, so nothing recompiles. Every
row is computed independently of the others, so a query's track never depends on which other
queries are asked (TAP-Vid requires this). Tracking needs the parameters alone (pipeline restores
them without the optimiser state).

Conventions: queries are (t, y, x) with (x, y) raster px at the model's resolution (integer =
pixel centre); tracks are (x, y) [Q, T, 2]; occluded [Q, T] bool.
"""

import jax
import numpy as np

from omnimotion_jax.data.filtering import in_frame
from omnimotion_jax.model import render
from omnimotion_jax.model.model import OmniMotion


def track_queries(mapper, params, queries: np.ndarray, video: render.VideoShape, *,
                  chunk_size: int, occlusion_threshold: float, cycle_threshold: float = 0.0,
                  cycle_threshold_per_frame: float = 0.0, back_mapper=None):
  """Tracks query points through every frame.

  Args:
    mapper: from `render.make_mapper`.
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
    back_mapper: mapper for that check (`render.make_mapper(..., with_occlusion=False)` saves
      work);
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
  mapped, _, score = render.map_in_chunks(mapper, params, px, src, tgt, chunk_size,
                                          desc='tracking')
  tracks = mapped.reshape(q, t, 2)
  occluded = (score > occlusion_threshold).reshape(q, t)
  if cycle_threshold > 0:
    back, _, _ = render.map_in_chunks(back_mapper or mapper, params, mapped, tgt, src,
                                      chunk_size, desc='cycle check')
    threshold = cycle_threshold + cycle_threshold_per_frame * np.abs(tgt - src)
    occluded |= (np.linalg.norm(back - px, axis=-1) > threshold).reshape(q, t)
  occluded = occluded | ~in_frame(tracks, video.height, video.width)
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


def make_depth_fn(model: OmniMotion, video: render.VideoShape):
  """Jitted (params, px [C,2], frame [C]) -> pseudo-depth [C] (expected local depth)."""

  @jax.jit
  def depth_fn(params, px, frame):
    return (render.pseudo_depth(model, params, px, frame, video),)

  return depth_fn


def depth_maps(depth_fn, params, video: render.VideoShape, frames, *, chunk_size: int,
               stride: int = 1) -> np.ndarray:
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
  (depth,) = render.map_in_chunks(mapper, params, np.tile(px, (len(frames), 1)),
                                  np.repeat(frames, hw), np.repeat(frames, hw), chunk_size,
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
