"""Reading and writing videos: a video file or a folder of frames -> uint8 [T, H, W, 3].

Inputs:
  * a video file (VIDEO_SUFFIXES: mp4, mov, webm, gif, avi, mkv, m4v), decoded by mediapy with the
    ffmpeg binary bundled by imageio-ffmpeg;
  * a folder of frames (IMAGE_SUFFIXES: jpg, jpeg, png, any case), sorted by file name.

Frame selection and resizing happen in this order: every `stride`-th frame, then at most
`max_frames` of those, then a resize to `resize` = (H, W) or to `max_side` (longer side, aspect
kept). Downscaling uses area interpolation (no aliasing), upscaling bilinear.

Image modes (folders): 8-bit RGB is used as is. 8-bit greyscale ('L') and palette images without
transparency ('P') are converted to RGB, which is exact. Every other mode raises a
`UserInputError` that asks for 8-bit RGB: alpha ('RGBA', 'LA', palette with transparency) because
the colour under transparent pixels is arbitrary and the alpha would be silently dropped, 16-bit
and float ('I;16', 'I', 'F') because scaling them to 8 bits is a choice the user should make, and
'CMYK' / 'YCbCr' / '1' because their colours depend on profiles / thresholds. Video files are
always decoded to rgb24 by ffmpeg.
"""

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from omnimotion_jax import fileio
from omnimotion_jax.errors import UserInputError

VIDEO_SUFFIXES = ('.mp4', '.mov', '.webm', '.gif', '.avi', '.mkv', '.m4v')
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png')
# PIL modes converted to RGB losslessly; every other non-RGB mode is an error (module docstring).
CONVERTIBLE_MODES = ('L', 'P')
MIN_FRAMES = 2  # A video needs at least one pair of frames.
# ffmpeg codec per output suffix where the container's default does not work.
_WRITE_CODECS = {'.gif': 'gif', '.webm': 'libvpx-vp9'}
_CONVERT_HINT = 'convert the frames to 8-bit RGB (e.g. `convert in.png -depth 8 -type TrueColor out.png`)'


def _use_bundled_ffmpeg():
  """Points mediapy at imageio-ffmpeg's static binary (no system ffmpeg needed)."""
  import imageio_ffmpeg
  import mediapy
  mediapy.set_ffmpeg(imageio_ffmpeg.get_ffmpeg_exe())
  return mediapy


def _check_selection(resize, max_side, stride, max_frames) -> None:
  if resize is not None:
    if (len(tuple(resize)) != 2 or any(int(v) != v or v < 1 for v in resize)):
      raise UserInputError(f'data.resize={resize!r}: expected None or (height, width) in px, '
                           'two positive integers.')
  if max_side is not None and (int(max_side) != max_side or max_side < 1):
    raise UserInputError(f'data.max_side={max_side!r}: expected None or a positive integer (px).')
  if int(stride) != stride or stride < 1:
    raise UserInputError(f'data.stride={stride!r}: expected a positive integer (frames).')
  if max_frames is not None and (int(max_frames) != max_frames or max_frames < MIN_FRAMES):
    raise UserInputError(f'data.max_frames={max_frames!r}: expected None or an integer '
                         f'>= {MIN_FRAMES}.')


def output_size(height: int, width: int, resize=None, max_side=None) -> tuple[int, int]:
  """The (H, W) px that frames of size (height, width) get under `resize` / `max_side`."""
  if resize is not None:
    return int(resize[0]), int(resize[1])
  if max_side is not None:
    scale = max_side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))
  return height, width


def resize_frame(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """Resizes uint8 [H, W, 3] to size = (H', W'): area filter when shrinking, bilinear otherwise."""
  height, width = size
  if frame.shape[:2] == (height, width):
    return frame
  shrink = height * width < frame.shape[0] * frame.shape[1]
  interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
  return cv2.resize(frame, (width, height), interpolation=interpolation)


def list_frame_files(folder: str | os.PathLike) -> list[Path]:
  """The jpg/jpeg/png files of `folder`, sorted by name; UserInputError if there are none."""
  folder = Path(folder)
  files = sorted(p for p in folder.iterdir()
                 if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith('.'))
  if not files:
    raise UserInputError(f'{folder}: no frames found (expected {"/".join(IMAGE_SUFFIXES)} files); '
                         'put the video\'s frames in this folder or pass a video file.')
  return files


def read_image_rgb(path: Path) -> np.ndarray:
  """Reads one frame as uint8 [H, W, 3] RGB (greyscale / plain palette converted, see module doc)."""
  try:
    with Image.open(path) as image:
      mode = image.mode
      transparent = 'transparency' in image.info
      if mode == 'P' and transparent:
        raise UserInputError(f'{path}: palette image with transparency is not supported; '
                             f'{_CONVERT_HINT}.')
      if mode in CONVERTIBLE_MODES:
        image = image.convert('RGB')
      elif mode != 'RGB':
        raise UserInputError(f'{path}: image mode {mode!r} is not 8-bit RGB; {_CONVERT_HINT}.')
      return np.asarray(image, dtype=np.uint8)
  except UserInputError:
    raise
  except Exception as error:  # PIL raises many types for corrupt files.
    raise UserInputError(f'{path}: cannot read this image ({type(error).__name__}: {error}); '
                         're-export it as jpg or png.') from None


def _image_size(path: Path) -> tuple[int, int]:
  """(H, W) from the file header, without decoding the pixels."""
  try:
    with Image.open(path) as image:
      return image.height, image.width
  except Exception as error:
    raise UserInputError(f'{path}: cannot read this image ({type(error).__name__}: {error}); '
                         're-export it as jpg or png.') from None


def _select(items: Iterable, stride: int, max_frames: int | None) -> Iterator[tuple[int, object]]:
  """(original index, item) for every stride-th item, at most max_frames of them."""
  kept = 0
  for index, item in enumerate(items):
    if max_frames is not None and kept >= max_frames:
      return
    if index % stride == 0:
      kept += 1
      yield index, item


def probe_video(path: str | os.PathLike) -> dict:
  """Cheap facts about a video file or frame folder: {'num_frames', 'height', 'width', 'fps'}."""
  path = Path(path)
  if path.is_dir():
    files = list_frame_files(path)
    height, width = _image_size(files[0])
    return {'num_frames': len(files), 'height': height, 'width': width, 'fps': None}
  mediapy = _use_bundled_ffmpeg()
  with mediapy.VideoReader(path) as reader:
    return {'num_frames': reader.num_images, 'height': reader.shape[0], 'width': reader.shape[1],
            'fps': reader.fps}


def load_video(path: str | os.PathLike, resize: tuple[int, int] | None = None,
               max_side: int | None = None, stride: int = 1, max_frames: int | None = None,
               return_indices: bool = False):
  """Loads a video file or a folder of frames.

  Args:
    path: a video file (VIDEO_SUFFIXES) or a folder of jpg/jpeg/png frames (sorted by name).
    resize: (H, W) px of the output frames; None keeps the input size (or uses max_side).
    max_side: if set and resize is None, the longer side becomes this many px (aspect kept).
    stride: keep every stride-th input frame (frame 0 is always kept).
    max_frames: keep at most this many frames after striding; None keeps all (no silent cap).
    return_indices: also return the input index of every kept frame.

  Returns:
    uint8 [T, H, W, 3] RGB frames, T >= 2; with return_indices, (frames, int32 [T] indices).

  Raises:
    UserInputError: missing path, unsupported suffix, undecodable video, no frames, mixed frame
      sizes in a folder, a non-RGB image mode, bad selection arguments, or fewer than 2 frames.
  """
  _check_selection(resize, max_side, stride, max_frames)
  path = Path(path)
  if not path.exists():
    raise UserInputError(f'{path}: no such file or folder; pass a video file '
                         f'({"/".join(VIDEO_SUFFIXES)}) or a folder of frames.')
  if path.is_dir():
    frames, indices = _load_folder(path, resize, max_side, stride, max_frames)
  elif path.suffix.lower() in VIDEO_SUFFIXES:
    frames, indices = _load_file(path, resize, max_side, stride, max_frames)
  else:
    raise UserInputError(f'{path}: unsupported file type {path.suffix!r}; pass a video '
                         f'({"/".join(VIDEO_SUFFIXES)}) or a folder of jpg/png frames.')
  if len(frames) < MIN_FRAMES:
    raise UserInputError(f'{path}: only {len(frames)} frame(s) after stride={stride}, '
                         f'max_frames={max_frames}; at least {MIN_FRAMES} are needed '
                         '(use a longer video or a smaller stride).')
  frames = np.stack(frames)
  if return_indices:
    return frames, np.asarray(indices, np.int32)
  return frames


def select_frames(video: np.ndarray, resize: tuple[int, int] | None = None,
                  max_side: int | None = None, stride: int = 1,
                  max_frames: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """`load_video`'s frame selection and resizing for frames already in memory.

  video: uint8 [T, H, W, 3]. Returns (uint8 [T', H', W', 3] frames, int32 [T'] input indices).
  """
  _check_selection(resize, max_side, stride, max_frames)
  video = np.asarray(video)
  if video.ndim != 4 or video.shape[-1] != 3 or video.dtype != np.uint8:
    raise UserInputError(f'frames: expected uint8 [T, H, W, 3], got {video.dtype} '
                         f'{list(video.shape)}.')
  size = output_size(*video.shape[1:3], resize, max_side)
  picked = list(_select(video, stride, max_frames))
  if len(picked) < MIN_FRAMES:
    raise UserInputError(f'frames: only {len(picked)} frame(s) after stride={stride}, '
                         f'max_frames={max_frames}; at least {MIN_FRAMES} are needed.')
  frames = np.stack([resize_frame(frame, size) for _, frame in picked])
  return frames, np.asarray([index for index, _ in picked], np.int32)


def _load_folder(folder, resize, max_side, stride, max_frames):
  files = list_frame_files(folder)
  # Check every header first so a mixed-size folder fails before any decoding.
  first_size = _image_size(files[0])
  for file in files[1:]:
    size = _image_size(file)
    if size != first_size:
      raise UserInputError(f'{file}: frame size {size[1]}x{size[0]} differs from '
                           f'{files[0].name} ({first_size[1]}x{first_size[0]}); all frames in a '
                           'folder must have the same size (resize them or remove the odd file).')
  size = output_size(*first_size, resize, max_side)
  frames, indices = [], []
  for index, file in _select(files, stride, max_frames):
    frames.append(resize_frame(read_image_rgb(file), size))
    indices.append(index)
  return frames, indices


def _load_file(path, resize, max_side, stride, max_frames):
  mediapy = _use_bundled_ffmpeg()
  frames, indices = [], []
  try:
    # Stream the decode so a long, large video is never held in memory at full size.
    with mediapy.VideoReader(path) as reader:
      size = output_size(*reader.shape, resize, max_side)
      for index, frame in _select(reader, stride, max_frames):
        frames.append(resize_frame(np.asarray(frame[..., :3], np.uint8), size))
        indices.append(index)
  except Exception as error:  # mediapy raises RuntimeError/ValueError with ffmpeg's stderr.
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    raise UserInputError(f'{path}: cannot decode this video ({first_line[:120]}); check that it '
                         'is a valid video file or pass a folder of frames.') from None
  return frames, indices


def save_video(path: str | os.PathLike, frames: np.ndarray, fps: float) -> Path:
  """Writes uint8 [T, H, W, 3] frames to a video file, atomically (fileio.atomic_path).

  The container follows the suffix (.mp4, .gif, .webm, ...). Returns the path.
  """
  path = Path(path)
  frames = np.asarray(frames)
  if frames.ndim != 4 or frames.shape[-1] != 3:
    raise UserInputError(f'{path}: frames must be [T, H, W, 3], got shape {frames.shape}.')
  if path.suffix.lower() not in VIDEO_SUFFIXES:
    raise UserInputError(f'{path}: unsupported video suffix; use one of {VIDEO_SUFFIXES}.')
  mediapy = _use_bundled_ffmpeg()
  codec = _WRITE_CODECS.get(path.suffix.lower())
  kwargs = {'codec': codec} if codec else {}
  with fileio.atomic_path(path) as tmp:
    mediapy.write_video(tmp, frames.astype(np.uint8), fps=fps, **kwargs)
  return path
