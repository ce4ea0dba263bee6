"""Tests of the TAP-Vid TFDS builders: tiny pickles in the exact TAP-Vid layouts, built without TF.

Each test writes pickles into tmp_path (a dict for DAVIS, a list for RGB-Stacking, list shards
with JPEG bytes per frame for Kinetics), prepares the builders into a tmp data_dir and reads them
back through `as_data_source()`, the numpy-only path.
"""

import importlib
import pickle
import sys

import cv2
import numpy as np
import pytest
import tensorflow_datasets as tfds

import omnimotion_jax.evaluation.builders  # noqa: F401  (registers the builders)
from omnimotion_jax.data import synthetic
from omnimotion_jax.errors import UserInputError
from omnimotion_jax.evaluation import builders

SIZE = 256
# A small video, not square, so that x and y scale differently (4x and 5.33x).
HEIGHT, WIDTH = 48, 64
NUM_FRAMES = 3
# Solid colour of the test frames, and the colour of a block drawn on them.
BACKGROUND = (200, 30, 0)
BLOCK = (255, 255, 255)
# The block covers columns 12..19 and rows 20..27: centre (15.5, 23.5) px -> normalised.
BLOCK_SLICE = (slice(20, 28), slice(12, 20))
BLOCK_POINT = (15.5 / WIDTH, 23.5 / HEIGHT)
# The known point of the brief: normalised (0.25, 0.5) -> (64, 128) px at 256x256.
KNOWN_POINT = (0.25, 0.5)
KNOWN_POINT_256 = (64.0, 128.0)
# JPEG of a flat colour decodes within a level or two.
JPEG_TOL = 3


def _video(num_frames=NUM_FRAMES, height=HEIGHT, width=WIDTH, block=True):
  """uint8 [T, H, W, 3]: a solid BACKGROUND, with a BLOCK square in the frame when block."""
  video = np.empty((num_frames, height, width, 3), np.uint8)
  video[:] = BACKGROUND
  if block:
    video[(slice(None), *BLOCK_SLICE)] = BLOCK
  return video


def _tracks(num_frames=NUM_FRAMES):
  """points float32 [3, T, 2] normalised (x, y) and occluded bool [3, T], all distinct."""
  points = np.zeros((3, num_frames, 2), np.float32)
  points[0] = KNOWN_POINT
  points[1] = BLOCK_POINT
  points[2, :, 0] = np.linspace(0.1, 0.9, num_frames)
  points[2, :, 1] = 0.75
  occluded = np.zeros((3, num_frames), bool)
  occluded[2, 1] = True
  occluded[0, -1] = True
  return points, occluded


def _entry(num_frames=NUM_FRAMES, **kwargs):
  points, occluded = _tracks(num_frames)
  return {'video': _video(num_frames, **kwargs), 'points': points, 'occluded': occluded}


def _dump(path, data):
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, 'wb') as f:
    pickle.dump(data, f)
  return path


def _prepare(name, data_dir, manual_dir, config=builders.DEFAULT_CONFIG):
  builder = tfds.builder(f'{name}/{config}', data_dir=str(data_dir))
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
  return builder


def _read_all(builder):
  source = builder.as_data_source()[builders.SPLIT]
  return [source[i] for i in range(len(source))]


def _jpeg(frame):
  ok, buffer = cv2.imencode('.jpg', cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
  assert ok
  return buffer.tobytes()


# ---------------------------------------------------------------------------------------------
# No TensorFlow.


def test_tensorflow_is_not_installed():
  """The builders promise to work without TF: this venv must not have it."""
  if importlib.util.find_spec('tensorflow') is not None:
    pytest.skip('tensorflow is installed here, so this venv cannot show TF-free operation')
  with pytest.raises(ImportError):
    import tensorflow  # noqa: F401  # pylint: disable=import-outside-toplevel,unused-import


# ---------------------------------------------------------------------------------------------
# DAVIS.


@pytest.fixture(scope='module')
def davis(tmp_path_factory):
  """A DAVIS-layout pickle (dict name -> video) with two videos of different lengths."""
  root = tmp_path_factory.mktemp('davis')
  data = {'bear': _entry(), 'car-turn': _entry(NUM_FRAMES + 2, block=False)}
  _dump(root / 'manual' / builders.DAVIS_FILE, data)
  return root, data


def test_davis_256(davis):
  root, data = davis
  builder = _prepare('tapvid_davis', root / 'data', root / 'manual')
  assert isinstance(builder, builders.TapvidDavis)
  assert builder.info.file_format.value == 'array_record'
  assert list(builder.info.splits) == [builders.SPLIT]
  examples = _read_all(builder)
  assert [e['video_id'] for e in examples] == [b'bear', b'car-turn']  # file order
  for example, source in zip(examples, data.values()):
    num_frames = source['video'].shape[0]
    assert example['video'].dtype == np.uint8
    assert example['video'].shape == (num_frames, SIZE, SIZE, 3)
    assert example['target_points'].dtype == np.float32
    assert example['target_points'].shape == (3, num_frames, 2)
    np.testing.assert_array_equal(example['occluded'], source['occluded'])
    np.testing.assert_array_equal(example['target_points'], source['points'] * SIZE)
  bear = examples[0]
  np.testing.assert_array_equal(bear['target_points'][0, 0], KNOWN_POINT_256)
  # A solid colour stays that colour (Lanczos weights sum to 1).
  np.testing.assert_array_equal(examples[1]['video'], np.broadcast_to(BACKGROUND, (5, 256, 256, 3)))
  # Frames and points are scaled alike: the block's centre lands on the block.
  x, y = np.round(bear['target_points'][1, 0]).astype(int)
  np.testing.assert_array_equal(bear['video'][:, y, x], np.broadcast_to(BLOCK, (NUM_FRAMES, 3)))
  # Lanczos rings within 3 source px of an edge: look 10 source px (40 px here) away.
  np.testing.assert_array_equal(bear['video'][:, y, x + 40], np.broadcast_to(BACKGROUND, (3, 3)))
  assert 'tensorflow' not in sys.modules


def test_davis_full_keeps_size_and_frames(davis):
  root, data = davis
  builder = _prepare('tapvid_davis', root / 'data', root / 'manual', builders.FULL_CONFIG)
  examples = _read_all(builder)
  for example, source in zip(examples, data.values()):
    np.testing.assert_array_equal(example['video'], source['video'])  # PNG is lossless
    np.testing.assert_allclose(example['target_points'], source['points'] * [WIDTH, HEIGHT],
                               rtol=1e-6)
    np.testing.assert_array_equal(example['occluded'], source['occluded'])
  np.testing.assert_allclose(examples[0]['target_points'][1, 0], (15.5, 23.5), rtol=1e-6)


def test_davis_class_and_load_tapvid(davis):
  root, _ = davis
  # The class can be built directly too, and a prepared set is reused.
  builder = builders.TapvidDavis(data_dir=str(root / 'data'))
  assert builder.is_prepared()
  examples = list(builders.load_tapvid('tapvid_davis', root / 'data', root / 'manual',
                                       videos=['car-turn', 0]))
  assert [e['video_id'] for e in examples] == ['car-turn', 'bear']
  assert examples[0]['video'].shape == (NUM_FRAMES + 2, SIZE, SIZE, 3)
  with pytest.raises(UserInputError, match='no video'):
    list(builders.load_tapvid('tapvid_davis', root / 'data', videos=['zebra']))
  with pytest.raises(UserInputError, match='unknown TAP-Vid set'):
    list(builders.load_tapvid('tapvid_sintel', root / 'data'))
  with pytest.raises(UserInputError, match='no config'):
    list(builders.load_tapvid('tapvid_davis', root / 'data', resolution='128x128'))


# ---------------------------------------------------------------------------------------------
# RGB-Stacking.


def test_rgb_stacking_list_layout(tmp_path):
  data = [_entry(), _entry(NUM_FRAMES + 1, block=False)]
  _dump(tmp_path / 'manual' / 'tapvid_rgb_stacking' / builders.RGB_STACKING_FILE, data)
  examples = list(builders.load_tapvid('tapvid_rgb_stacking', tmp_path / 'data',
                                       tmp_path / 'manual'))
  assert [e['video_id'] for e in examples] == ['0', '1']
  assert [e['video'].shape for e in examples] == [(3, SIZE, SIZE, 3), (4, SIZE, SIZE, 3)]
  for example, source in zip(examples, data):
    np.testing.assert_array_equal(example['target_points'], source['points'] * SIZE)
    np.testing.assert_array_equal(example['occluded'], source['occluded'])


# ---------------------------------------------------------------------------------------------
# Kinetics.


@pytest.fixture(scope='module')
def kinetics(tmp_path_factory):
  """Two generate_tapvid.py shards: JPEG bytes per frame, as an array (like TapNet) or a list."""
  root = tmp_path_factory.mktemp('kinetics')
  first = _entry()
  first['video'] = np.array([_jpeg(frame) for frame in first['video']])  # dtype S: TapNet's
  second = _entry(NUM_FRAMES + 1, block=False)
  second['video'] = [_jpeg(frame) for frame in second['video']]
  third = _entry()
  third['video'] = [_jpeg(frame) for frame in third['video']]
  third['video_id'] = 'abcdefghijk_000010_000020'
  _dump(root / 'manual' / '0000_of_0002.pkl', [first, second])
  _dump(root / 'manual' / '0001_of_0002.pkl', [third])
  return root, [first, second, third]


def test_kinetics_256(kinetics):
  root, data = kinetics
  examples = _read_all(_prepare('tapvid_kinetics', root / 'data', root / 'manual'))
  assert [e['video_id'] for e in examples] == [
      b'0000_of_0002_0000', b'0000_of_0002_0001', b'abcdefghijk_000010_000020']
  for example, source in zip(examples, data):
    assert example['video'].shape == (len(source['video']), SIZE, SIZE, 3)
    np.testing.assert_array_equal(example['target_points'], source['points'] * SIZE)
    np.testing.assert_array_equal(example['occluded'], source['occluded'])
  flat = examples[1]['video'].astype(int)
  assert np.abs(flat - np.array(BACKGROUND)).max() <= JPEG_TOL


def test_kinetics_full_keeps_jpeg_frames(kinetics):
  root, data = kinetics
  builder = _prepare('tapvid_kinetics', root / 'data', root / 'manual', builders.FULL_CONFIG)
  examples = _read_all(builder)
  stored = builder.as_data_source(builders.SPLIT,
                                  decoders={'video': builders.KeepEncodedFrames()})
  for index, source in enumerate(data):
    assert [bytes(f) for f in stored[index]['video']] == [bytes(f) for f in source['video']]
  for example, source in zip(examples, data):
    decoded = np.stack([
        cv2.cvtColor(cv2.imdecode(np.frombuffer(bytes(f), np.uint8), cv2.IMREAD_COLOR),
                     cv2.COLOR_BGR2RGB) for f in source['video']])
    np.testing.assert_array_equal(example['video'], decoded)
    np.testing.assert_allclose(example['target_points'], source['points'] * [WIDTH, HEIGHT],
                               rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# Synthetic.


def test_synthetic_mini_256(tmp_path):
  builder = tfds.builder('tapvid_synthetic/mini_256x256', data_dir=str(tmp_path))
  builder.download_and_prepare()  # no manual files
  source = builder.as_data_source()[builders.SPLIT]
  specs = synthetic.SUITES[builders.SYNTHETIC_MINI_SUITE]
  assert len(source) == len(specs)
  example = source[0]
  assert example['video_id'].decode() == specs[0].name
  original = synthetic.suite_video(builders.SYNTHETIC_MINI_SUITE, 0)
  height, width = original['video'].shape[1:3]
  assert example['video'].shape == (original['video'].shape[0], SIZE, SIZE, 3)
  np.testing.assert_allclose(example['target_points'],
                             original['target_points'] * [SIZE / width, SIZE / height],
                             rtol=1e-5, atol=1e-4)
  np.testing.assert_array_equal(example['occluded'], original['occluded'])
  # Not a blank video: the resized frames keep the texture.
  assert example['video'].std() > 10


# ---------------------------------------------------------------------------------------------
# Errors.


def _prepare_fails(name, tmp_path, manual_dir, match):
  with pytest.raises(UserInputError, match=match):
    _prepare(name, tmp_path / 'data', manual_dir)
  assert not tfds.builder(name, data_dir=str(tmp_path / 'data')).is_prepared()


def test_missing_manual_dir_and_file(tmp_path):
  _prepare_fails('tapvid_davis', tmp_path, tmp_path / 'nowhere', 'does not exist or is empty')
  _dump(tmp_path / 'manual' / 'unrelated.pkl', [])
  _prepare_fails('tapvid_davis', tmp_path, tmp_path / 'manual', 'tapvid_davis.pkl is missing')
  _prepare_fails('tapvid_rgb_stacking', tmp_path, tmp_path / 'manual',
                 'tapvid_rgb_stacking.pkl is missing')
  _prepare_fails('tapvid_kinetics', tmp_path, tmp_path / 'manual', 'no Kinetics shards')


@pytest.mark.parametrize('data, match', [
    ([_entry()], 'holds a list .*RGB-Stacking layout.*expected a dict'),
    ({'bear': [1, 2]}, "video 'bear' is a list, expected a dict"),
    ({'bear': {'video': _video(), 'points': _tracks()[0]}}, r"lacks keys \['occluded'\]"),
    ({'bear': {**_entry(), 'points': _tracks(NUM_FRAMES + 1)[0]}},
     r"'points' has shape \(3, 4, 2\), expected \[n, 3, 2\]"),
    ({'bear': {**_entry(), 'occluded': np.zeros((2, NUM_FRAMES), bool)}},
     r"'occluded' has shape \(2, 3\), expected \(3, 3\)"),
    ({'bear': {**_entry(), 'video': _video().astype(np.float32)}}, 'expected uint8'),
])
def test_davis_wrong_layout(tmp_path, data, match):
  _dump(tmp_path / 'manual' / builders.DAVIS_FILE, data)
  _prepare_fails('tapvid_davis', tmp_path, tmp_path / 'manual', match)


def test_unreadable_pickle_and_wrong_rgb_layout(tmp_path):
  (tmp_path / 'manual').mkdir()
  (tmp_path / 'manual' / builders.DAVIS_FILE).write_bytes(b'not a pickle')
  _prepare_fails('tapvid_davis', tmp_path, tmp_path / 'manual', 'could not be unpickled')
  _dump(tmp_path / 'manual' / builders.RGB_STACKING_FILE, {'bear': _entry()})
  _prepare_fails('tapvid_rgb_stacking', tmp_path, tmp_path / 'manual',
                 'holds a dict .*DAVIS layout')


def test_kinetics_errors(tmp_path):
  entry = _entry()
  entry['video'] = [_jpeg(frame) for frame in entry['video']]
  _dump(tmp_path / 'manual' / '0000_of_0003.pkl', [entry])
  _dump(tmp_path / 'manual' / '0002_of_0003.pkl', [entry])
  _prepare_fails('tapvid_kinetics', tmp_path, tmp_path / 'manual', 'lacks Kinetics shards 0001')
  broken = dict(entry, video=[entry['video'][0], b'\xff\xd8 not a jpeg', entry['video'][2]])
  _dump(tmp_path / 'manual' / '0001_of_0003.pkl', [broken])
  _prepare_fails('tapvid_kinetics', tmp_path, tmp_path / 'manual',
                 r'0001_of_0003.pkl entry 0: frame 1 .* not a readable')
