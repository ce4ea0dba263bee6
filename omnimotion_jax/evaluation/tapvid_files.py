"""Reading and checking the TAP-Vid files (pickles, Kinetics shards) and making stored examples.

No TFDS here: `builders.py` wraps these readers in TFDS builders.

Point convention: TAP-Vid's normalised points are pixel-centre raster coordinates divided by the
frame size (generate_tapvid.py shifts the CSV's edge-normalised values by half a pixel for that),
so pixel (x, y) of a W x H frame is (x / W, y / H). The synthetic suite's ground truth is already
pixel-centre raster px and is normalised the same way.

Pickles can run code when loaded: only point these readers at the official TAP-Vid files or
files you generated yourself.
"""

import dataclasses
import os
import pickle
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from omnimotion_jax.errors import UserInputError

# Arrays every TAP-Vid pickle entry carries.
REQUIRED_KEYS = ('video', 'points', 'occluded')
NUM_CHANNELS = 3

DAVIS_FILE = 'tapvid_davis.pkl'
RGB_STACKING_FILE = 'tapvid_rgb_stacking.pkl'
# generate_tapvid.py writes f'{shard:04}_of_{num_shards:04}.pkl' (10 shards by default).
KINETICS_SHARD_PATTERN = re.compile(r'^(\d+)_of_(\d+)\.pkl$')
KINETICS_SHARD_GLOB = '*_of_*.pkl'

DAVIS_URL = 'https://storage.googleapis.com/dm-tapnet/tapvid_davis.zip'
RGB_STACKING_URL = 'https://storage.googleapis.com/dm-tapnet/tapvid_rgb_stacking.zip'
KINETICS_URL = 'https://storage.googleapis.com/dm-tapnet/tapvid_kinetics.zip'


# --- reading and checking the TAP-Vid pickles -------------------------------------------------

@dataclasses.dataclass
class RawVideo:
  """One video before resizing.

  Attributes:
    key: unique example key.
    video_id: the example's video_id.
    video: uint8 [T, H, W, 3] RGB frames.
    points: float64 [n, T, 2] (x, y) normalised: pixel-centre raster px / (W, H).
    occluded: bool [n, T].
    encoded_frames: the source's own encoded frames (Kinetics JPEGs), stored as they are at
      full resolution; None to encode `video` as PNG.
  """
  key: str
  video_id: str
  video: np.ndarray
  points: np.ndarray
  occluded: np.ndarray
  encoded_frames: list[bytes] | None = None


def _load_pickle(path: Path, fix: str) -> Any:
  """Unpickles `path`, turning any failure into a UserInputError naming the file."""
  try:
    with open(path, 'rb') as f:
      return pickle.load(f)
  except Exception as error:  # pylint: disable=broad-except  # Any unpickling failure.
    raise UserInputError(f'{path} could not be unpickled ({type(error).__name__}: {error}); '
                         f'{fix}') from None


def manual_dir_of(dl_manager, builder_name: str, instructions: str) -> Path:
  """The manual dir, or a UserInputError saying how to fill it."""
  try:
    return Path(os.fspath(dl_manager.manual_dir))
  except AssertionError:  # TFDS asserts the folder exists and is not empty.
    # pylint: disable-next=protected-access
    where = getattr(dl_manager, '_manual_dir', None) or '(the default <data_dir>/downloads/manual)'
    raise UserInputError(
        f'manual dir {where} for {builder_name} does not exist or is empty. {instructions}'
    ) from None


def find_manual_file(manual_dir: Path, filename: str, instructions: str) -> Path:
  """`manual_dir/filename`, or `manual_dir/<stem>/filename` (the zip's own folder)."""
  candidates = [manual_dir / filename, manual_dir / Path(filename).stem / filename]
  for candidate in candidates:
    if candidate.is_file():
      return candidate
  raise UserInputError(
      f'{filename} is missing: looked for {" and ".join(map(str, candidates))}; put the file '
      f'there (or pass the folder holding it as manual_dir). {instructions}')


def _check_tracks(entry: Mapping, num_frames: int, where: str,
                  fix: str) -> tuple[np.ndarray, np.ndarray]:
  """Checked ('points' float64 [n, T, 2], 'occluded' bool [n, T]) of one pickle entry."""
  try:
    points = np.asarray(entry['points'], dtype=np.float64)
  except (TypeError, ValueError) as error:
    raise UserInputError(f"{where}: 'points' is not a numeric array ({error}); {fix}") from None
  if points.ndim != 3 or points.shape[2] != 2 or points.shape[1] != num_frames:
    raise UserInputError(f"{where}: 'points' has shape {points.shape}, expected [n, {num_frames}"
                         f', 2] (tracks, frames, xy) for a video of {num_frames} frames; {fix}')
  occluded = np.asarray(entry['occluded'])
  if occluded.dtype != np.bool_:  # 0 / 1 integers are accepted as bool.
    if not (np.issubdtype(occluded.dtype, np.integer) and np.isin(occluded, (0, 1)).all()):
      raise UserInputError(f"{where}: 'occluded' has dtype {occluded.dtype}, expected bool; {fix}")
    occluded = occluded.astype(bool)
  if occluded.shape != points.shape[:2]:
    raise UserInputError(f"{where}: 'occluded' has shape {occluded.shape}, expected "
                         f"{points.shape[:2]} to match 'points'; {fix}")
  return points, occluded


def _check_entry(entry: Any, where: str, fix: str) -> Mapping:
  """The entry as a mapping holding REQUIRED_KEYS, or a UserInputError."""
  if not isinstance(entry, Mapping):
    raise UserInputError(f'{where} is a {type(entry).__name__}, expected a dict with keys '
                         f'{list(REQUIRED_KEYS)}; {fix}')
  if missing := [key for key in REQUIRED_KEYS if key not in entry]:
    raise UserInputError(f'{where} lacks keys {missing} (has {sorted(map(str, entry))}); {fix}')
  return entry


def _decoded_video(entry: Mapping, where: str, fix: str) -> np.ndarray:
  """Checked uint8 [T, H, W, 3] 'video' of an entry that holds decoded frames."""
  video = np.asarray(entry['video'])
  if video.dtype != np.uint8 or video.ndim != 4 or video.shape[-1] != NUM_CHANNELS:
    raise UserInputError(f"{where}: 'video' is {video.dtype} {video.shape}, expected uint8 "
                         f'[T, H, W, 3]; {fix}')
  if min(video.shape[:3]) == 0:
    raise UserInputError(f"{where}: 'video' is empty {video.shape}; {fix}")
  return video


def _raw_from_entry(entry: Any, key: str, video_id: str, where: str, fix: str) -> RawVideo:
  entry = _check_entry(entry, where, fix)
  video = _decoded_video(entry, where, fix)
  points, occluded = _check_tracks(entry, video.shape[0], where, fix)
  return RawVideo(key, video_id, video, points, occluded)


def _decode_jpeg_frames(frames: Any, where: str, fix: str) -> tuple[np.ndarray, list[bytes] | None]:
  """Decodes a Kinetics 'video' (one encoded image per frame, or already decoded frames).

  Returns:
    uint8 [T, H, W, 3] RGB, and the encoded frames when every one decodes to 3 channels as is
    (so storing them unchanged gives back exactly these frames), else None.
  """
  array = np.asarray(frames) if not isinstance(frames, (list, tuple)) else None
  if array is not None and array.dtype == np.uint8 and array.ndim == 4:
    return _decoded_video({'video': array}, where, fix), None
  if array is not None and array.ndim != 1:
    raise UserInputError(f"{where}: 'video' is {array.dtype} {array.shape}, expected a list of "
                         'JPEG bytes per frame (or uint8 [T, H, W, 3]); ' + fix)
  encoded = list(frames)
  if not encoded:
    raise UserInputError(f"{where}: 'video' has no frames; {fix}")
  decoded, keep_encoded = [], True
  for index, frame in enumerate(encoded):
    if not isinstance(frame, (bytes, np.bytes_)):
      raise UserInputError(f"{where}: frame {index} of 'video' is a {type(frame).__name__}, "
                           f'expected JPEG bytes; {fix}')
    # IMREAD_UNCHANGED: no EXIF rotation, as PIL (TapNet) and TFDS's own decoder.
    image = cv2.imdecode(np.frombuffer(bytes(frame), np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or image.dtype != np.uint8:
      raise UserInputError(f"{where}: frame {index} of 'video' is not a readable 8-bit image; "
                           + fix)
    if image.ndim == 2:
      image, keep_encoded = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB), False
    elif image.shape[2] == 4:
      image, keep_encoded = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB), False
    else:
      image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if decoded and image.shape != decoded[0].shape:
      raise UserInputError(f"{where}: frame {index} of 'video' is {image.shape[:2]}, frame 0 "
                           f'is {decoded[0].shape[:2]}; all frames must have one size; {fix}')
    decoded.append(image)
  return np.stack(decoded), ([bytes(f) for f in encoded] if keep_encoded else None)


def find_kinetics_shards(manual_dir: Path, instructions: str = '') -> list[Path]:
  """All generate_tapvid.py shards in `manual_dir` (or its tapvid_kinetics/), in shard order.

  Raises:
    UserInputError: no shards, shards of different totals, or missing shards.
  """
  for folder in (manual_dir, manual_dir / 'tapvid_kinetics'):
    shards = sorted(p for p in folder.glob(KINETICS_SHARD_GLOB)
                    if KINETICS_SHARD_PATTERN.match(p.name))
    if shards:
      break
  else:
    raise UserInputError(f'no Kinetics shards (NNNN_of_MMMM.pkl) in {manual_dir} or '
                         f'{manual_dir / "tapvid_kinetics"}; generate them. {instructions}')
  numbers = [tuple(map(int, KINETICS_SHARD_PATTERN.match(p.name).groups())) for p in shards]
  totals = sorted({total for _, total in numbers})
  if len(totals) != 1:
    raise UserInputError(f'{folder} mixes shards of different runs (totals {totals}); keep the '
                         'shards of one generate_tapvid.py run only')
  missing = sorted(set(range(totals[0])) - {index for index, _ in numbers})
  if missing:
    names = ', '.join(f'{i:04}_of_{totals[0]:04}.pkl' for i in missing)
    raise UserInputError(f'{folder} lacks Kinetics shards {names}; the benchmark uses all of '
                         f'them, copy the missing ones there (or regenerate). {instructions}')
  return [shard for _, shard in sorted(zip(numbers, shards))]


# --- the three TAP-Vid layouts ----------------------------------------------------------------

def read_davis(path: Path) -> list[RawVideo]:
  """The videos of tapvid_davis.pkl (a dict video name -> entry), every one checked."""
  fix = f'download a fresh {DAVIS_FILE} from {DAVIS_URL}'
  data = _load_pickle(path, fix)
  if not isinstance(data, Mapping):
    hint = ' (that is the RGB-Stacking layout)' if isinstance(data, (list, tuple)) else ''
    raise UserInputError(f'{path} holds a {type(data).__name__}{hint}, expected a dict '
                         f'video_name -> {{video, points, occluded}}; {fix}')
  return [_raw_from_entry(entry, str(name), str(name), f'{path} video {name!r}', fix)
          for name, entry in data.items()]


def read_rgb_stacking(path: Path) -> list[RawVideo]:
  """The videos of tapvid_rgb_stacking.pkl (a list of entries), every one checked."""
  fix = f'download a fresh {RGB_STACKING_FILE} from {RGB_STACKING_URL}'
  data = _load_pickle(path, fix)
  if not isinstance(data, (list, tuple)):
    hint = ' (that is the DAVIS layout)' if isinstance(data, Mapping) else ''
    raise UserInputError(f'{path} holds a {type(data).__name__}{hint}, expected a list of '
                         f'{{video, points, occluded}} dicts; {fix}')
  return [_raw_from_entry(entry, str(index), str(index), f'{path} entry {index}', fix)
          for index, entry in enumerate(data)]


def read_kinetics(shards: list[Path]) -> Iterator[RawVideo]:
  """The videos of generate_tapvid.py shards (lists of entries with JPEG frames), in order."""
  fix = "regenerate the shard with tapnet's generate_tapvid.py"
  for shard in shards:  # One shard in memory at a time (each holds ~100 clips of JPEGs).
    data = _load_pickle(shard, fix)
    if not isinstance(data, (list, tuple)):
      raise UserInputError(f'{shard} holds a {type(data).__name__}, expected a list of '
                           f'{{video, points, occluded}} dicts; {fix}')
    for index, entry in enumerate(data):
      where = f'{shard} entry {index}'
      entry = _check_entry(entry, where, fix)
      video, encoded = _decode_jpeg_frames(entry['video'], where, fix)
      points, occluded = _check_tracks(entry, video.shape[0], where, fix)
      key = f'{shard.stem}_{index:04}'
      yield RawVideo(key, as_str(entry.get('video_id', key)), video, points, occluded, encoded)
    del data


def as_str(value: Any) -> str:
  """A video id as str (TFDS Text and pickles may hold bytes)."""
  return value.decode() if isinstance(value, bytes) else str(value)


# --- stored examples --------------------------------------------------------------------------

def _encode_png(frame: np.ndarray) -> bytes:
  ok, buffer = cv2.imencode('.png', cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
  if not ok:
    raise RuntimeError('OpenCV failed to PNG-encode a frame')
  return buffer.tobytes()


def to_example(raw: RawVideo, resolution: tuple[int, int] | None) -> dict:
  """The stored example of one video at `resolution` ((height, width), or None for full).

  Frames are resized as TapNet's reader resizes them (mediapy.resize_video, PIL Lanczos on
  uint8) and points become normalised * (width, height): raster px, no half-pixel offset.
  """
  height, width = raw.video.shape[1:3]
  encoded = raw.encoded_frames if resolution is None else None
  if resolution is None or tuple(resolution) == (height, width):
    video, size = raw.video, (width, height)
  else:
    # Imported here: mediapy pulls in matplotlib (~0.5 s), needed only while preparing.
    import mediapy  # pylint: disable=import-outside-toplevel
    video, size = mediapy.resize_video(raw.video, tuple(resolution)), resolution[::-1]
  if encoded is None:
    encoded = [_encode_png(frame) for frame in video]
  target_points = (raw.points * np.asarray(size, np.float64)).astype(np.float32)
  return {
      'video_id': raw.video_id,
      'video': encoded,
      'target_points': target_points,
      'occluded': raw.occluded.astype(bool),
  }
