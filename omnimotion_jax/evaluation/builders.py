"""TFDS builders for the TAP-Vid evaluation sets that work without TensorFlow.

Four `tfds.core.GeneratorBasedBuilder`s, registered when this module is imported:

  * `tapvid_davis`: the 30 DAVIS validation videos, from `tapvid_davis.pkl` (manual download);
  * `tapvid_rgb_stacking`: the 50 synthetic robot videos, from `tapvid_rgb_stacking.pkl`;
  * `tapvid_kinetics`: the Kinetics-700-2020 validation clips, from the `NNNN_of_MMMM.pkl` shards
    that TapNet's `generate_tapvid.py` writes (frames stored there as JPEG bytes);
  * `tapvid_synthetic`: this project's procedural suite (`omnimotion_jax.data.synthetic`),
    generated on the spot, no manual files.

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
Queries are sampled afterwards (see `tapvid/queries.py`) and are (t, y, x).

Reading and checking the files, the point convention, resizing and a warning about pickles:
`tapvid_files.py`.

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

Tests: .venv/bin/python -m pytest tests/evaluation/test_builders.py
"""

import dataclasses
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from omnimotion_jax.data import synthetic
from omnimotion_jax.errors import UserInputError
from omnimotion_jax.evaluation import tapvid_files
from omnimotion_jax.evaluation.tapvid_files import (DAVIS_FILE, DAVIS_URL, KINETICS_URL,
                                                    NUM_CHANNELS, RGB_STACKING_FILE,
                                                    RGB_STACKING_URL, RawVideo, as_str,
                                                    find_kinetics_shards, to_example)

SPLIT = 'test'
# TapNet's evaluation raster (height, width).
TAPVID_RESOLUTION = (256, 256)
DEFAULT_CONFIG = '256x256'
FULL_CONFIG = 'full'
DATASET_VERSION = '1.0.0'
# Lossless, and what `tfds.features.Image` decodes with OpenCV.
FRAME_ENCODING = 'png'

TAPNET_URL = 'https://github.com/google-deepmind/tapnet'

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


# --- features and configs ---------------------------------------------------------------------

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
    suite: the `omnimotion_jax.data.synthetic` suite (tapvid_synthetic only).
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


# --- builders ---------------------------------------------------------------------------------

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

  def _manual_dir(self, dl_manager) -> Path:
    return tapvid_files.manual_dir_of(dl_manager, self.name, self.MANUAL_DOWNLOAD_INSTRUCTIONS)

  def _manual_file(self, dl_manager, filename: str) -> Path:
    return tapvid_files.find_manual_file(self._manual_dir(dl_manager), filename,
                                         self.MANUAL_DOWNLOAD_INSTRUCTIONS)

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
    # Every entry is checked before anything is written.
    yield from tapvid_files.read_davis(self._manual_file(dl_manager, DAVIS_FILE))


class TapvidRgbStacking(_TapVidBuilder):
  """TAP-Vid-RGB-Stacking: 50 synthetic robot stacking videos (250 frames each)."""

  DESCRIPTION = 'TAP-Vid-RGB-Stacking (50 videos), read from tapvid_rgb_stacking.pkl.'
  MANUAL_DOWNLOAD_INSTRUCTIONS = _manual_instructions(
      f'Download {RGB_STACKING_URL} and unzip it; put {RGB_STACKING_FILE} in the manual dir (or '
      "keep the zip's tapvid_rgb_stacking/ folder inside it).")

  def _raw_videos(self, dl_manager) -> Iterator[RawVideo]:
    yield from tapvid_files.read_rgb_stacking(self._manual_file(dl_manager, RGB_STACKING_FILE))


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
    shards = find_kinetics_shards(self._manual_dir(dl_manager), self.MANUAL_DOWNLOAD_INSTRUCTIONS)
    yield from tapvid_files.read_kinetics(shards)


class TapvidSynthetic(_TapVidBuilder):
  """This project's procedural suite (`omnimotion_jax.data.synthetic`), in the TAP-Vid layout."""

  DESCRIPTION = ('Procedural layered videos with exact ground truth '
                 '(omnimotion_jax.data.synthetic); no manual files.')
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


# --- convenience loader -----------------------------------------------------------------------

def _example_to_numpy(example: Mapping) -> dict:
  return {
      'video_id': as_str(example['video_id']),
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
  builder = prepared_builder(name, data_dir, manual_dir, resolution)
  source = builder.as_data_source(split=SPLIT)
  indices = range(len(source)) if videos is None else _video_indices(builder, source, videos)
  for index in indices:
    yield _example_to_numpy(source[index])


def prepared_builder(name: str, data_dir: str | os.PathLike, manual_dir: str | os.PathLike | None,
                     resolution: str) -> tfds.core.GeneratorBasedBuilder:
  """The builder of set `name` at config `resolution`, prepared first if needed (`load_tapvid`)."""
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
  return builder


def video_ids(builder) -> list[str]:
  """The video ids of a prepared builder's split, in order (the frames are not decoded)."""
  source = builder.as_data_source(split=SPLIT, decoders={'video': KeepEncodedFrames()})
  return [as_str(source[index]['video_id']) for index in range(len(source))]


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
    if ids is None:  # {id: position}; the first of repeated ids wins.
      ids = {video_id: index for index, video_id in reversed(list(enumerate(video_ids(builder))))}
    if str(video) not in ids:
      raise UserInputError(f'{builder.name} has no video {video!r}; it has {sorted(ids)}')
    indices.append(ids[str(video)])
  return indices

