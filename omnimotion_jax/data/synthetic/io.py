"""Synthetic videos on disk: compressed .npz samples, previews and `omnimotion-jax synth`."""

import os
from pathlib import Path

import cv2
import numpy as np

from omnimotion_jax import fileio
from omnimotion_jax.data.synthetic.renderer import DEFAULT_NUM_FRAMES, DEFAULT_SIZE, make_video
from omnimotion_jax.errors import UserInputError

# Preview rendering.
PREVIEW_FPS = 10
PREVIEW_DOT_RADIUS = 2
PREVIEW_PALETTE = ((255, 255, 255), (255, 64, 64), (64, 255, 64), (64, 128, 255), (255, 255, 0),
                   (255, 0, 255), (0, 255, 255), (255, 160, 0), (160, 0, 255))

# Keys that load back as Python scalars.
_SCALAR_KEYS = {'seed': int, 'num_layers': int, 'name': str}
_REQUIRED_KEYS = ('video', 'target_points', 'occluded', 'query_points_first',
                  'query_points_strided', 'trackgroup_strided')


def save_video_npz(sample: dict, path: str | os.PathLike) -> None:
  """Writes a sample (as from `make_video`) to a compressed .npz, atomically (fileio)."""
  path = Path(path)
  if path.is_dir():
    raise UserInputError(f'{path} is a folder; pass a file path ending in .npz')
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
  frames = np.array(sample['video'])  # a C-contiguous copy: cv2 draws into frames[t] in place
  points, layer_id = sample['target_points'], sample['layer_id']
  for t, frame in enumerate(frames):
    for n in np.nonzero(~sample['occluded'][:, t])[0]:
      colour = PREVIEW_PALETTE[int(layer_id[n]) % len(PREVIEW_PALETTE)]
      centre = tuple(int(round(v)) for v in points[n, t])
      cv2.circle(frame, centre, PREVIEW_DOT_RADIUS, colour, -1, lineType=cv2.LINE_AA)
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
    # Imported here: mediapy pulls in matplotlib, needed only for previews.
    import imageio_ffmpeg  # pylint: disable=import-outside-toplevel
    import mediapy  # pylint: disable=import-outside-toplevel
    mediapy.set_ffmpeg(imageio_ffmpeg.get_ffmpeg_exe())
    preview_path = out.with_suffix('.mp4')
    with fileio.atomic_open(preview_path) as f:  # h264 in an mp4 container, as write_video
      f.write(mediapy.compress_video(preview_frames(sample), fps=PREVIEW_FPS))
  return {'npz': out, 'preview': preview_path, 'num_tracks': int(len(sample['layer_id'])),
          'num_frames': int(frames)}
