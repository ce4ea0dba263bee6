"""TFDS builders for the TAP-Vid evaluation sets that work without TensorFlow.

Four `tfds.core.GeneratorBasedBuilder`s, registered when `omnimotion_jax.tapvid` is imported:

  * `tapvid_davis`: the 30 DAVIS validation videos, from `tapvid_davis.pkl` (manual download);
  * `tapvid_rgb_stacking`: the 50 synthetic robot videos, from `tapvid_rgb_stacking.pkl`;
  * `tapvid_kinetics`: the Kinetics-700-2020 validation clips, from the `NNNN_of_MMMM.pkl` shards
    that TapNet's `generate_tapvid.py` writes (frames stored there as JPEG bytes);
  * `tapvid_synthetic`: this project's procedural suite (`omnimotion_jax.synthetic`), generated on
    the spot, no manual files.

Every builder writes `array_record` files (the format TFDS reads with plain numpy, through
`as_data_source()`), so neither preparing nor reading needs TensorFlow. There is one split,
'test', holding the whole set in its original order: TapNet evaluates on all of it.

Builder configs (the resolution of the stored frames and of `target_points`):
  * '256x256' (default): frames resized to 256x256 with `mediapy.resize_video` (PIL Lanczos,
    exactly TapNet's reader) and target_points = normalised points * [256, 256], raster pixels
    at 256x256 with no half-pixel offset, again exactly as TapNet's reader;
  * 'full': frames at their original size and target_points = normalised points * [W, H].
  `tapvid_synthetic` also has 'mini_256x256' and 'mini_full', built from the small
  'synthetic-mini' suite (4 videos, for quick checks).

Each example (`ds[i]`, numpy values):
  video_id: bytes (tfds Text; `load_tapvid` returns str). DAVIS: the video name; RGB-Stacking:
    the list index as a str ('0', '1', ...); Kinetics: '<shard stem>_<index in shard>' (e.g.
    '0003_of_0010_0041', or the shard entry's own 'video_id' where it has one); synthetic: the
    suite's video names.
  video: uint8 [T, H, W, 3] RGB. Stored as one lossless PNG per frame (a Sequence of Image
    features, decoded with OpenCV by TFDS), because raw Tensors would need ~50 GB for
    Kinetics at 256x256. Kinetics 'full' keeps the shards' own JPEG bytes, bit for bit. The
    frame feature is `StackedFrame` (an Image that stacks the sequence into one array), so
    reading a prepared folder with `tfds.builder_from_directory` needs this module imported;
    `as_data_source(decoders={'video': KeepEncodedFrames()})` reads without decoding frames.
  target_points: float32 [n, T, 2], tracks as (x, y) raster pixels at the config's resolution.
  occluded: bool [n, T], True where the point is occluded.
Queries are sampled afterwards (see `queries.py`) and are (t, y, x).

Point convention: TAP-Vid's normalised points are pixel-centre raster coordinates divided by the
frame size (generate_tapvid.py shifts the CSV's edge-normalised values by half a pixel for that),
so pixel (x, y) of a W x H frame is (x / W, y / H). The synthetic suite's ground truth is already
pixel-centre raster px and is normalised the same way.

Commands (manual files: see `MANUAL_DOWNLOAD_INSTRUCTIONS` of each builder):

  import tensorflow_datasets as tfds
  import omnimotion_jax.evaluation.builders  # registers the builders
  builder = tfds.builder('tapvid_davis', data_dir='/data/tfds')        # or 'tapvid_davis/full'
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir='/data/tapvid'))
  ds = builder.as_data_source()['test']
  example = ds[0]   # dict of numpy arrays, see above

  # or, preparing on first use and yielding plain numpy dicts:
  from omnimotion_jax.evaluation.builders import load_tapvid
  for example in load_tapvid('tapvid_davis', '/data/tfds', manual_dir='/data/tapvid'):
    ...

Tests: .venv/bin/python -m pytest tests/test_tapvid_builders.py

Pickles can run code when loaded: only point these builders at the official TAP-Vid files or
files you generated yourself.
"""

import dataclasses
import os
import pickle
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import tensorflow_datasets as tfds

from omnimotion_jax.data import synthetic
from omnimotion_jax.errors import UserInputError

# ---------------------------------------------------------------------------------------------
# Constants.

SPLIT = 'test'
# TapNet's evaluation raster (height, width).
TAPVID_RESOLUTION = (256, 256)
DEFAULT_CONFIG = '256x256'
FULL_CONFIG = 'full'
DATASET_VERSION = '1.0.0'
# Arrays every TAP-Vid pickle entry carries.
REQUIRED_KEYS = ('video', 'points', 'occluded')
NUM_CHANNELS = 3
# Lossless, and what `tfds.features.Image` decodes with OpenCV.
FRAME_ENCODING = 'png'

DAVIS_FILE = 'tapvid_davis.pkl'
RGB_STACKING_FILE = 'tapvid_rgb_stacking.pkl'
# generate_tapvid.py writes f'{shard:04}_of_{num_shards:04}.pkl' (10 shards by default).
KINETICS_SHARD_PATTERN = re.compile(r'^(\d+)_of_(\d+)\.pkl$')
KINETICS_SHARD_GLOB = '*_of_*.pkl'

TAPNET_URL = 'https://github.com/google-deepmind/tapnet'
DAVIS_URL = 'https://storage.googleapis.com/dm-tapnet/tapvid_davis.zip'
RGB_STACKING_URL = 'https://storage.googleapis.com/dm-tapnet/tapvid_rgb_stacking.zip'
KINETICS_URL = 'https://storage.googleapis.com/dm-tapnet/tapvid_kinetics.zip'

SYNTHETIC_SUITE = 'synthetic-v1'
SYNTHETIC_MINI_SUITE = 'synthetic-mini'

CITATION = r"""@inproceedings{doersch2022tapvid,
  title = {{TAP}-Vid: A Benchmark for Tracking Any Point in a Video},
  author = {Doersch, Carl and Gupta, Ankush and Markeeva, Larisa and Recasens, Adri{\`a} and
            Smaira, Lucas and Aytar, Yusuf and Carreira, Jo{\~a}o and Zisserman, Andrew and
            Yang, Yi},
  booktitle = {NeurIPS Datasets and Benchmarks Track},
  year = {2022}
}"""


# ---------------------------------------------------------------------------------------------
# Features and configs.


class StackedFrame(tfds.features.Image):
  """An encoded image feature whose Sequence decodes (numpy) to one stacked [T, H, W, C] array.

  `tfds.features.Sequence(Image)` decodes to a Python list of frames with the numpy backend;
  stacking here makes `ds[i]['video']` a single uint8 array. Everything else is `Image`'s.
  """

  def decode_batch_example_np(self, batch):
    frames = [self.decode_example_np(encoded) for encoded in batch]
    if not frames:
      height, width, channels = (0 if d is None else d for d in self.shape)
      return np.zeros((0, height, width, channels), np.uint8)
    return np.stack(frames)


@dataclasses.dataclass(eq=False)
class TapVidConfig(tfds.core.BuilderConfig):
  """Resolution of the stored data.

  Attributes:
    resolution: (height, width) the frames are resized to and target_points scaled to, or None
      for the original frame size.
    suite: the `omnimotion_jax.synthetic` suite (tapvid_synthetic only).
  """
  resolution: tuple[int, int] | None = TAPVID_RESOLUTION
  suite: str = SYNTHETIC_SUITE


def _resolution_configs(prefix: str = '', suite: str = SYNTHETIC_SUITE,
                        what: str = '') -> list[TapVidConfig]:
  return [
      TapVidConfig(name=f'{prefix}{DEFAULT_CONFIG}', resolution=TAPVID_RESOLUTION, suite=suite,
                   description=f'{what}Frames resized to 256x256 (mediapy, as TapNet); '
                   'target_points in 256x256 raster px.'),
      TapVidConfig(name=f'{prefix}{FULL_CONFIG}', resolution=None, suite=suite,
                   description=f'{what}Original frame size; target_points in raster px of '
                   'that size.'),
  ]


def _features(resolution: tuple[int, int] | None) -> tfds.features.FeaturesDict:
  """The feature spec; frames have a static shape when the config fixes the resolution."""
  frame_shape = (None, None, NUM_CHANNELS) if resolution is None else (*resolution, NUM_CHANNELS)
  return tfds.features.FeaturesDict({
      'video_id': tfds.features.Text(doc='Name of the video within the set.'),
      'video': tfds.features.Sequence(
          StackedFrame(shape=frame_shape, encoding_format=FRAME_ENCODING),
          doc='uint8 [T, H, W, 3] RGB frames (stored as one PNG, or source JPEG, per frame).'),
      # encoding='bytes': TFDS needs it for tensors with several unknown dimensions.
      'target_points': tfds.features.Tensor(
          shape=(None, None, 2), dtype=np.float32, encoding='bytes',
          doc='float32 [n, T, 2] tracks, (x, y) raster px at the stored resolution.'),
      'occluded': tfds.features.Tensor(
          shape=(None, None), dtype=np.bool_, encoding='bytes',
          doc='bool [n, T], True where occluded.'),
  })


# ---------------------------------------------------------------------------------------------
# Reading and checking the TAP-Vid pickles.


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


def _manual_dir(dl_manager, builder_name: str, instructions: str) -> Path:
  """The manual dir, or a UserInputError saying how to fill it."""
  try:
    return Path(os.fspath(dl_manager.manual_dir))
  except AssertionError:  # TFDS asserts the folder exists and is not empty.
    # pylint: disable-next=protected-access
    where = getattr(dl_manager, '_manual_dir', None) or '(the default <data_dir>/downloads/manual)'
    raise UserInputError(
        f'manual dir {where} for {builder_name} does not exist or is empty. {instructions}'
    ) from None


def _find_manual_file(manual_dir: Path, filename: str, instructions: str) -> Path:
  """`manual_dir/filename`, or `manual_dir/<stem>/filename` (the zip's own folder)."""
  candidates = [manual_dir / filename, manual_dir / Path(filename).stem / filename]
  for candidate in candidates:
    if candidate.is_file():
      return candidate
  raise UserInputError(
      f'{filename} is missing: looked for {" and ".join(map(str, candidates))}; put the file '
      f'there (or pass the folder holding it as manual_dir). {instructions}')


def _as_bool(value: Any, where: str, fix: str) -> np.ndarray:
  array = np.asarray(value)
  if array.dtype == np.bool_:
    return array
  if np.issubdtype(array.dtype, np.integer) and np.isin(array, (0, 1)).all():
    return array.astype(bool)
  raise UserInputError(f"{where}: 'occluded' has dtype {array.dtype}, expected bool; {fix}")


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
  occluded = _as_bool(entry['occluded'], where, fix)
  if occluded.shape != points.shape[:2]:
    raise UserInputError(f"{where}: 'occluded' has shape {occluded.shape}, expected "
                         f"{points.shape[:2]} to match 'points'; {fix}")
  return points, occluded


def _check_entry(entry: Any, where: str, fix: str) -> Mapping:
  """The entry as a mapping holding REQUIRED_KEYS, or a UserInputError."""
  if not isinstance(entry, Mapping):
    raise UserInputError(f'{where} is a {type(entry).__name__}, expected a dict with keys '
                         f'{list(REQUIRED_KEYS)}; {fix}')
  missing = [key for key in REQUIRED_KEYS if key not in entry]
  if missing:
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


# ---------------------------------------------------------------------------------------------
# Builders.


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
  if resolution is None or tuple(resolution) == (height, width):
    video, size = raw.video, (width, height)
    encoded = raw.encoded_frames if resolution is None else None
  else:
    # Imported here: mediapy pulls in matplotlib (~0.5 s), needed only while preparing.
    import mediapy  # pylint: disable=import-outside-toplevel
    video, size = mediapy.resize_video(raw.video, tuple(resolution)), resolution[::-1]
    encoded = None
  if encoded is None:
    encoded = [_encode_png(frame) for frame in video]
  target_points = (raw.points * np.asarray(size, np.float64)).astype(np.float32)
  return {
      'video_id': raw.video_id,
      'video': encoded,
      'target_points': target_points,
      'occluded': raw.occluded.astype(bool),
  }


class _TapVidBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Shared parts: array_record by default, configs, features, one 'test' split."""

  VERSION = tfds.core.Version(DATASET_VERSION)
  RELEASE_NOTES = {DATASET_VERSION: 'First release.'}
  BUILDER_CONFIGS = _resolution_configs()
  DEFAULT_BUILDER_CONFIG_NAME = DEFAULT_CONFIG
  DESCRIPTION = ''
  HOMEPAGE = 'https://tapvid.github.io'

  def __init__(self, *, file_format: str | None = None, **kwargs):
    # array_record is what TFDS reads without TensorFlow (tfrecord needs tf.data).
    super().__init__(file_format=file_format or 'array_record', **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    # Built directly (not dataset_info_from_configs): that one scans this package's folder
    # for README / CITATIONS metadata files.
    return tfds.core.DatasetInfo(
        builder=self,
        description=self.DESCRIPTION,
        features=_features(self.builder_config.resolution),
        homepage=self.HOMEPAGE,
        citation=CITATION,
        # Keep the source order (TapNet evaluates videos in file order).
        disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    return {SPLIT: self._generate_examples(self._raw_videos(dl_manager))}

  def _raw_videos(self, dl_manager) -> Iterator[RawVideo]:
    raise NotImplementedError

  def _generate_examples(self, raw_videos: Iterator[RawVideo]):
    for raw in raw_videos:
      yield raw.key, to_example(raw, self.builder_config.resolution)


def _manual_instructions(steps: str) -> str:
  """MANUAL_DOWNLOAD_INSTRUCTIONS text: where the TAP-Vid files come from, then `steps`."""
  return (f'The files come from the TAP-Vid release of google-deepmind/tapnet ({TAPNET_URL}, '
          f'see tapnet/tapvid/README.md). {steps} Then prepare with '
          'download_and_prepare(download_config=tfds.download.DownloadConfig('
          'manual_dir=<that folder>)).')


class TapvidDavis(_TapVidBuilder):
  """TAP-Vid-DAVIS: 30 DAVIS 2017 validation videos with human-annotated tracks."""

  DESCRIPTION = 'TAP-Vid-DAVIS (30 videos), read from tapvid_davis.pkl.'
  MANUAL_DOWNLOAD_INSTRUCTIONS = _manual_instructions(
      f'Download {DAVIS_URL} and unzip it; put {DAVIS_FILE} in the manual dir (or keep the '
      "zip's tapvid_davis/ folder inside it).")

  def _raw_videos(self, dl_manager) -> Iterator[RawVideo]:
    manual_dir = _manual_dir(dl_manager, self.name, self.MANUAL_DOWNLOAD_INSTRUCTIONS)
    path = _find_manual_file(manual_dir, DAVIS_FILE, self.MANUAL_DOWNLOAD_INSTRUCTIONS)
    fix = f'download a fresh {DAVIS_FILE} from {DAVIS_URL}'
    data = _load_pickle(path, fix)
    if not isinstance(data, Mapping):
      hint = ' (that is the RGB-Stacking layout)' if isinstance(data, (list, tuple)) else ''
      raise UserInputError(f'{path} holds a {type(data).__name__}{hint}, expected a dict '
                           f'video_name -> {{video, points, occluded}}; {fix}')
    # Check every entry before writing anything.
    raws = [_raw_from_entry(entry, str(name), str(name), f'{path} video {name!r}', fix)
            for name, entry in data.items()]
    yield from raws


class TapvidRgbStacking(_TapVidBuilder):
  """TAP-Vid-RGB-Stacking: 50 synthetic robot stacking videos (250 frames each)."""

  DESCRIPTION = 'TAP-Vid-RGB-Stacking (50 videos), read from tapvid_rgb_stacking.pkl.'
  MANUAL_DOWNLOAD_INSTRUCTIONS = _manual_instructions(
      f'Download {RGB_STACKING_URL} and unzip it; put {RGB_STACKING_FILE} in the manual dir (or '
      "keep the zip's tapvid_rgb_stacking/ folder inside it).")

  def _raw_videos(self, dl_manager) -> Iterator[RawVideo]:
    manual_dir = _manual_dir(dl_manager, self.name, self.MANUAL_DOWNLOAD_INSTRUCTIONS)
    path = _find_manual_file(manual_dir, RGB_STACKING_FILE, self.MANUAL_DOWNLOAD_INSTRUCTIONS)
    fix = f'download a fresh {RGB_STACKING_FILE} from {RGB_STACKING_URL}'
    data = _load_pickle(path, fix)
    if not isinstance(data, (list, tuple)):
      hint = ' (that is the DAVIS layout)' if isinstance(data, Mapping) else ''
      raise UserInputError(f'{path} holds a {type(data).__name__}{hint}, expected a list of '
                           f'{{video, points, occluded}} dicts; {fix}')
    raws = [_raw_from_entry(entry, str(index), str(index), f'{path} entry {index}', fix)
            for index, entry in enumerate(data)]
    yield from raws


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


class TapvidKinetics(_TapVidBuilder):
  """TAP-Vid-Kinetics: Kinetics-700-2020 validation clips (~1000) at 25 fps, <= 250 frames."""

  DESCRIPTION = 'TAP-Vid-Kinetics, read from the generate_tapvid.py shards (JPEG frames).'
  MANUAL_DOWNLOAD_INSTRUCTIONS = _manual_instructions(
      f'Download {KINETICS_URL} (the track CSV), fetch the Kinetics-700-2020 validation clips, '
      "then run tapnet's tapnet/tapvid/generate_tapvid.py --input_csv_path=<csv> "
      '--output_base_path=<folder> --video_root_path=<clips>. Put all the shards it writes '
      '(0000_of_0010.pkl ... 0009_of_0010.pkl) in the manual dir (or in a tapvid_kinetics/ '
      'folder inside it).')

  def _raw_videos(self, dl_manager) -> Iterator[RawVideo]:
    manual_dir = _manual_dir(dl_manager, self.name, self.MANUAL_DOWNLOAD_INSTRUCTIONS)
    shards = find_kinetics_shards(manual_dir, self.MANUAL_DOWNLOAD_INSTRUCTIONS)
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
        video_id = entry.get('video_id', key)
        video_id = video_id.decode() if isinstance(video_id, bytes) else str(video_id)
        yield RawVideo(key, video_id, video, points, occluded, encoded)
      del data


class TapvidSynthetic(_TapVidBuilder):
  """This project's procedural suite (`omnimotion_jax.synthetic`), in the TAP-Vid layout."""

  DESCRIPTION = ('Procedural layered videos with exact ground truth (omnimotion_jax.synthetic); '
                 'no manual files.')
  BUILDER_CONFIGS = (
      _resolution_configs(what=f'Suite {SYNTHETIC_SUITE}. ')
      + _resolution_configs('mini_', SYNTHETIC_MINI_SUITE, f'Suite {SYNTHETIC_MINI_SUITE}. '))
  HOMEPAGE = TAPNET_URL

  def _raw_videos(self, dl_manager) -> Iterator[RawVideo]:
    del dl_manager  # Nothing to download.
    suite = self.builder_config.suite
    for index, sample in enumerate(synthetic.make_suite(suite)):
      height, width = sample['video'].shape[1:3]
      # Pixel-centre raster px -> TAP-Vid normalised, as for the real sets.
      points = sample['target_points'].astype(np.float64) / np.array([width, height], np.float64)
      yield RawVideo(f'{index:04}_{sample["name"]}', sample['name'], sample['video'], points,
                     np.asarray(sample['occluded'], bool))


BUILDERS = {
    builder.name: builder
    for builder in (TapvidDavis, TapvidRgbStacking, TapvidKinetics, TapvidSynthetic)
}


# ---------------------------------------------------------------------------------------------
# Convenience loader.


def _example_to_numpy(example: Mapping) -> dict:
  video_id = example['video_id']
  return {
      'video_id': video_id.decode() if isinstance(video_id, bytes) else str(video_id),
      'video': np.asarray(example['video'], np.uint8),
      'target_points': np.asarray(example['target_points'], np.float32),
      'occluded': np.asarray(example['occluded'], bool),
  }


def load_tapvid(name: str, data_dir: str | os.PathLike, manual_dir: str | os.PathLike | None = None,
                resolution: str = DEFAULT_CONFIG,
                videos: Sequence[str | int] | None = None) -> Iterator[dict]:
  """Yields the videos of a TAP-Vid set as numpy dicts, preparing the set first if needed.

  Args:
    name: 'tapvid_davis', 'tapvid_rgb_stacking', 'tapvid_kinetics' or 'tapvid_synthetic'.
    data_dir: TFDS data dir (prepared array_record files live there).
    manual_dir: folder with the TAP-Vid pickles (unused for tapvid_synthetic, and when the set is
      already prepared).
    resolution: config name: '256x256' (TapNet's protocol) or 'full'; tapvid_synthetic also has
      'mini_256x256' and 'mini_full' (its small suite).
    videos: video ids (str) or positions in the split (int) to yield, in the given order; None
      for all, in file order.

  Yields:
    Dicts with video_id (str), video (uint8 [T, H, W, 3]), target_points (float32 [n, T, 2],
    (x, y) raster px at the config's resolution) and occluded (bool [n, T]).

  Raises:
    UserInputError: unknown name, config or video, or bad / missing manual files.
  """
  if name not in BUILDERS:
    raise UserInputError(f'unknown TAP-Vid set {name!r}; choose one of {sorted(BUILDERS)}')
  builder_cls = BUILDERS[name]
  configs = [config.name for config in builder_cls.BUILDER_CONFIGS]
  if resolution not in configs:
    raise UserInputError(f'{name} has no config {resolution!r}; choose one of {configs}')
  builder = builder_cls(data_dir=os.fspath(data_dir), config=resolution)
  if not builder.is_prepared():
    download_config = tfds.download.DownloadConfig(
        manual_dir=None if manual_dir is None else os.fspath(manual_dir))
    builder.download_and_prepare(download_config=download_config)
  source = builder.as_data_source(split=SPLIT)
  if videos is None:
    indices = range(len(source))
  else:
    indices = _video_indices(builder, source, videos)
  for index in indices:
    yield _example_to_numpy(source[index])


class KeepEncodedFrames(tfds.decode.Decoder):
  """Leaves frames encoded (TFDS's SkipDecoding has no numpy path for Sequence features)."""

  def decode_example(self, serialized_example):
    return serialized_example

  def decode_example_np(self, serialized_example):
    return serialized_example

  def decode_batch_example_np(self, serialized_batch):
    return serialized_batch


def _video_indices(builder, source, videos: Sequence[str | int]) -> list[int]:
  """Positions in the split of `videos` (ids or positions)."""
  if isinstance(videos, (str, bytes)):
    videos = [videos]
  ids = None
  indices = []
  for video in videos:
    if isinstance(video, (int, np.integer)):
      if not 0 <= video < len(source):
        raise UserInputError(f'{builder.name} has videos 0..{len(source) - 1}, not {video}')
      indices.append(int(video))
      continue
    if ids is None:
      # Reads only the ids: the frames stay encoded.
      skip = builder.as_data_source(split=SPLIT, decoders={'video': KeepEncodedFrames()})
      ids = {}
      for index in range(len(skip)):
        video_id = skip[index]['video_id']
        ids.setdefault(video_id.decode() if isinstance(video_id, bytes) else str(video_id), index)
    if str(video) not in ids:
      raise UserInputError(f'{builder.name} has no video {video!r}; it has {sorted(ids)}')
    indices.append(ids[str(video)])
  return indices
