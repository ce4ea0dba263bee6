"""The videos of a workdir (report/*.mp4 plus a poster PNG each), and foreground masks.

Videos are drawn at the model's resolution, on the frames of the store; tracks files hold input
video px and are converted (workdir.py). `render_outputs` lists the inputs, each optional.
"""

import logging
import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from omnimotion_jax import fileio
from omnimotion_jax import workdir as workdir_lib
from omnimotion_jax.data import store
from omnimotion_jax.data import video as video_lib
from omnimotion_jax.viz import drawing

logger = logging.getLogger(__name__)

MASK_ERODE_PX = 3  # 7x7 kernel, as the reference.
MASK_FOLDER = 'masks'
MASK_RGBA = 'mask.png'
# Point thinning for the workdir videos (dense tracks would hide the video).
MAX_DRAWN_POINTS = 1024
MAX_TRAIL_POINTS = 256
MAX_BACKGROUND_POINTS = 4096  # enough for a stable median; bounds the cost for dense tracks.
DEFAULT_FPS = 10
POSTER_SUFFIX = '.png'
# Names of the videos render_outputs writes under report/ (report.py lists them in this order).
VIDEO_NAMES = ('side_by_side', 'tracks', 'trails', 'depth', 'gt_comparison')


# --- masks ----------------------------------------------------------------------------------------

def _mask_files(folder: Path) -> list[Path]:
  """The mask images of `folder` (.png / .jpg), sorted by name; [] if none."""
  if not folder.is_dir():
    return []
  return sorted(p for p in folder.iterdir()
                if p.suffix.lower() in video_lib.IMAGE_SUFFIXES and not p.name.startswith('.'))


def _read_image(path: Path) -> np.ndarray:
  with Image.open(path) as image:
    return np.asarray(image)


def load_mask_folder(path: str | os.PathLike, frame: int) -> np.ndarray:
  """Foreground bool [H, W] (any channel > 0) of mask `frame` of a folder, in name order."""
  files = _mask_files(Path(path))
  if not files:
    raise FileNotFoundError(f'{path}: no mask images')
  if not 0 <= frame < len(files):
    raise IndexError(f'{path}: frame {frame} outside the {len(files)} masks')
  mask = _read_image(files[frame])
  return mask > 0 if mask.ndim == 2 else np.any(mask > 0, axis=-1)


def load_rgba_mask(path: str | os.PathLike) -> np.ndarray:
  """Foreground from an RGBA image: bool [H, W], alpha > 0 (no alpha channel: any channel > 0)."""
  image = _read_image(Path(path))
  if image.ndim == 3 and image.shape[-1] in (2, 4):
    return image[..., -1] > 0
  return image > 0 if image.ndim == 2 else np.any(image > 0, axis=-1)


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


def _resize_mask(mask: np.ndarray, height: int, width: int) -> np.ndarray:
  if mask.shape == (height, width):
    return mask
  # Nearest keeps the mask binary; masks usually come at the input (pre-resize) resolution.
  return cv2.resize(mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0


def _workdir_mask(workdir: Path, query_points: np.ndarray, frame_indices: np.ndarray,
                  height: int, width: int) -> np.ndarray | None:
  """Foreground bool [T, H, W] (only query frames filled) from masks/ or mask.png, or None."""
  num_frames = len(frame_indices)
  query_frames = np.unique(np.clip(np.round(query_points[:, 0]).astype(int), 0, num_frames - 1))
  folder, rgba = workdir / MASK_FOLDER, workdir / MASK_RGBA
  masks = np.zeros((num_frames, height, width), bool)
  try:
    if num_masks := len(_mask_files(folder)):
      for t in query_frames:  # One mask per model frame, else one per input frame.
        index = int(t) if num_masks == num_frames else int(frame_indices[t])
        masks[t] = _resize_mask(load_mask_folder(folder, index), height, width)
      return masks
    if rgba.exists():
      masks[query_frames] = _resize_mask(load_rgba_mask(rgba), height, width)
      return masks
  except (OSError, IndexError, ValueError) as error:
    logger.warning('foreground mask not used: %s', error)
  return None


# --- writing ------------------------------------------------------------------------------------

def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float = DEFAULT_FPS) -> Path:
  """Writes uint8 [T, H, W, 3] to `path` atomically; odd H / W get one black row / column."""
  frames = np.asarray(frames, np.uint8)
  pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
  if pad_h or pad_w:
    # yuv420p (what browsers play) needs even sizes; mediapy would switch to yuv444p instead.
    frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)))
  return video_lib.save_video(path, frames, fps)


def write_png(path: str | os.PathLike, image: np.ndarray) -> Path:
  """Writes uint8 RGB [H, W, 3] as a PNG, atomically."""
  ok, png = cv2.imencode('.png', cv2.cvtColor(np.asarray(image, np.uint8), cv2.COLOR_RGB2BGR))
  if not ok:
    raise OSError(f'{path}: cannot encode PNG')
  with fileio.atomic_open(path) as f:
    f.write(png.tobytes())
  return Path(path)


# --- a workdir's videos ---------------------------------------------------------------------------

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
  if grid_step is not None:
    return thin_points(query_points, grid_step)
  if len(query_points) <= max_points:
    return np.arange(len(query_points))
  step = float(np.sqrt(height * width / max_points))
  keep = thin_points(query_points, step)
  while len(keep) > max_points:  # Queries from several frames: widen the cells.
    step *= 1.25
    keep = thin_points(query_points, step)
  return keep


def _model_px_tracks(path: Path, scale: tuple[float, float]):
  """(tracks float64 [Q, T, 2] (x, y), occluded [Q, T], queries float64 [Q, 3]) in model px."""
  data = workdir_lib.read_tracks(path)
  return (store.rescale_xy(data['tracks'], *scale).astype(np.float64),
          np.asarray(data['occluded'], bool),
          store.rescale_tyx(data['query_points'], *scale).astype(np.float64))


def _trails(workdir: Path, frames, frame_indices, tracks, occluded, query_points,
            grid_step: float | None) -> np.ndarray:
  """`draw_trails` of the thinned foreground (all points without a mask) over the background."""
  _, height, width, _ = frames.shape
  mask = _workdir_mask(workdir, query_points, frame_indices, height, width)
  if mask is not None:
    foreground, background = split_by_mask(mask, query_points)
  else:
    foreground, background = np.ones(len(query_points), bool), np.zeros(len(query_points), bool)
  # Thin only the drawn (foreground) points; background points just feed the camera median.
  fg_rows = np.flatnonzero(foreground)
  fg_rows = fg_rows[_auto_thin(query_points[fg_rows], height, width, MAX_TRAIL_POINTS, grid_step)]
  bg_rows = np.flatnonzero(background)
  if len(bg_rows) > MAX_BACKGROUND_POINTS:
    bg_rows = bg_rows[np.linspace(0, len(bg_rows) - 1, MAX_BACKGROUND_POINTS).astype(int)]
  rows = np.concatenate([fg_rows, bg_rows])
  is_fg = np.arange(len(rows)) < len(fg_rows)
  return drawing.draw_trails(frames, tracks[rows], occluded[rows], foreground=is_fg,
                             background=~is_fg if mask is not None else None)


def render_outputs(workdir: str | os.PathLike, *, fps: float = DEFAULT_FPS,
                   grid_step: float | None = None) -> dict[str, Path]:
  """Writes the videos of a workdir under workdir/report/, for the inputs that exist.

  Produces (each with a poster PNG report/<name>.png, the middle frame; tracks = tracks.npz, else
  tracks_eval.npz):
    tracks.mp4        (store + tracks) `draw_tracks`;
    trails.mp4        (store + tracks) `draw_trails`, foreground from masks/ or mask.png when
                      present (camera motion taken out), else all points;
    depth.mp4         (depth.npy) `colorize_depth`;
    side_by_side.mp4  (store + tracks and/or depth.npy) input | tracks | depth;
    gt_comparison.mp4 (store + tracks + gt.npz) `draw_gt_comparison`, of tracks_eval.npz (the
                      ground-truth queries) when tracks.npz holds a display grid.

  Args:
    workdir: the run folder.
    fps: frame rate of the videos.
    grid_step: draw at most one query per grid_step px cell; None thins dense tracks to about
      MAX_DRAWN_POINTS (MAX_TRAIL_POINTS for trails) and keeps sparse ones.

  Returns:
    {name: path} of the videos written.
  """
  workdir = Path(workdir)
  report = workdir / workdir_lib.REPORT
  report.mkdir(parents=True, exist_ok=True)
  outputs: dict[str, Path] = {}

  def save(name: str, video: np.ndarray) -> None:
    outputs[name] = write_video(report / f'{name}.mp4', video, fps)
    write_png(report / f'{name}{POSTER_SUFFIX}', video[len(video) // 2])

  frames, frame_indices = workdir_lib.load_frames(workdir) or (None, None)
  depth_video = None
  if (workdir / workdir_lib.DEPTH).exists():
    depth_video = drawing.colorize_depth(np.load(workdir / workdir_lib.DEPTH))
    if frames is not None and depth_video.shape[1:3] != frames.shape[1:3]:
      depth_video = np.stack([cv2.resize(d, (frames.shape[2], frames.shape[1]),
                                         interpolation=cv2.INTER_NEAREST) for d in depth_video])
    save('depth', depth_video)
    if frames is not None and len(depth_video) != len(frames):
      logger.warning('depth has %d frames, the store %d: depth left out of side_by_side',
                     len(depth_video), len(frames))
      depth_video = None

  tracks_video = None
  tracks_path, eval_path = workdir / workdir_lib.TRACKS, workdir / workdir_lib.EVAL_TRACKS
  if not tracks_path.exists():
    tracks_path = eval_path  # An evaluation run tracked only the ground-truth queries.
  if frames is not None and tracks_path.exists():
    _, height, width, _ = frames.shape
    scale = workdir_lib.stored_input_scale(workdir, (height, width))
    tracks, occluded, query_points = _model_px_tracks(tracks_path, scale)
    if tracks.shape[1] != len(frames):
      logger.warning('%s has %d frames, the store %d: no track videos', tracks_path.name,
                     tracks.shape[1], len(frames))
    else:
      keep = _auto_thin(query_points, height, width, MAX_DRAWN_POINTS, grid_step)
      tracks_video = drawing.draw_tracks(frames, tracks[keep], occluded[keep], query_points[keep])
      save('tracks', tracks_video)
      save('trails', _trails(workdir, frames, frame_indices, tracks, occluded, query_points,
                             grid_step))
      if (workdir / workdir_lib.GT).exists():
        with np.load(workdir / workdir_lib.GT) as data:
          gt_tracks = store.rescale_xy(data['target_points'], *scale).astype(np.float64)
          gt_occ = np.asarray(data['occluded'], bool)
        if eval_path.exists() and eval_path != tracks_path:
          # The run tracked a grid for display and the ground-truth queries separately.
          tracks, occluded, query_points = _model_px_tracks(eval_path, scale)
          keep = _auto_thin(query_points, height, width, MAX_DRAWN_POINTS, grid_step)
        if gt_tracks.shape != tracks.shape:
          logger.warning('gt target_points %s do not match tracks %s: no GT comparison',
                         gt_tracks.shape, tracks.shape)
        else:
          save('gt_comparison', drawing.draw_gt_comparison(
              frames, tracks[keep], occluded[keep], gt_tracks[keep], gt_occ[keep],
              query_points[keep]))

  if frames is not None and (tracks_video is not None or depth_video is not None):
    save('side_by_side', drawing.side_by_side(
        *[v for v in (frames, tracks_video, depth_video) if v is not None]))
  return outputs
