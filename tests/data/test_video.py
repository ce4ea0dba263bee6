"""Tests of video.py: reading files and frame folders, selection, resizing, and every user error."""

import numpy as np
import pytest
from PIL import Image

from omnimotion_jax.data import video
from omnimotion_jax.errors import UserInputError

NUM_FRAMES = 6
HEIGHT, WIDTH = 24, 32
# Lossy codecs (h264, vp9) change 8-bit values by a few levels on smooth content; GIF's 256-colour
# palette more. A wrong frame (or order) is off by ~40+ levels on average.
CODEC_MEAN_TOL = 12.0
GIF_MEAN_TOL = 20.0


def _frames(num=NUM_FRAMES, height=HEIGHT, width=WIDTH):
  """Smooth distinct frames uint8 [T, H, W, 3] (codec-friendly: gradients and a moving block)."""
  y, x = np.mgrid[0:height, 0:width]
  out = np.zeros((num, height, width, 3), np.uint8)
  for t in range(num):
    out[t, ..., 0] = (x * 255 // (width - 1))
    out[t, ..., 1] = (y * 255 // (height - 1))
    out[t, ..., 2] = 40 * t
  return out


def _write_folder(folder, frames, suffix='.png'):
  folder.mkdir(parents=True, exist_ok=True)
  for t, frame in enumerate(frames):
    Image.fromarray(frame).save(folder / f'{t:05d}{suffix}')
  return folder


def test_folder_roundtrip_exact_and_sorted(tmp_path):
  frames = _frames()
  folder = _write_folder(tmp_path / 'frames', frames[::-1])  # 00000.png is the last frame
  loaded = video.load_video(folder)
  assert loaded.dtype == np.uint8 and loaded.shape == frames.shape
  np.testing.assert_array_equal(loaded, frames[::-1])


def test_folder_jpg_and_upper_case_suffix(tmp_path):
  folder = tmp_path / 'jpgs'
  folder.mkdir()
  for t, frame in enumerate(_frames()):
    Image.fromarray(frame).save(folder / f'{t:03d}.JPG', quality=95)
  loaded = video.load_video(folder)
  assert loaded.shape == (NUM_FRAMES, HEIGHT, WIDTH, 3)
  assert np.abs(loaded.astype(float) - _frames()).mean() < CODEC_MEAN_TOL


def test_stride_max_frames_and_indices(tmp_path):
  folder = _write_folder(tmp_path / 'f', _frames())
  loaded, indices = video.load_video(folder, stride=2, max_frames=2, return_indices=True)
  np.testing.assert_array_equal(indices, [0, 2])
  np.testing.assert_array_equal(loaded, _frames()[[0, 2]])


def test_resize_and_max_side(tmp_path):
  folder = _write_folder(tmp_path / 'f', _frames())
  assert video.load_video(folder, resize=(12, 20)).shape == (NUM_FRAMES, 12, 20, 3)
  # Longer side (width 32) -> 16, aspect kept: 24 x 32 -> 12 x 16.
  assert video.load_video(folder, max_side=16).shape == (NUM_FRAMES, 12, 16, 3)
  assert video.load_video(folder, max_side=64).shape == (NUM_FRAMES, 48, 64, 3)


def test_greyscale_frames_are_converted(tmp_path):
  folder = tmp_path / 'grey'
  folder.mkdir()
  for t, frame in enumerate(_frames()):
    Image.fromarray(frame[..., 0]).save(folder / f'{t:05d}.png')  # mode 'L'
  loaded = video.load_video(folder)
  assert loaded.shape == (NUM_FRAMES, HEIGHT, WIDTH, 3)
  np.testing.assert_array_equal(loaded[..., 1], _frames()[..., 0])


@pytest.mark.parametrize('suffix', ['.mp4', '.gif', '.webm', '.avi', '.mov'])
def test_video_file_roundtrip(tmp_path, suffix):
  frames = _frames()
  path = video.save_video(tmp_path / f'clip{suffix}', frames, fps=10)
  assert path.is_file()
  assert [p.name for p in tmp_path.iterdir()] == [f'clip{suffix}']  # no temp file left behind
  loaded = video.load_video(path)
  assert loaded.shape == frames.shape
  tolerance = GIF_MEAN_TOL if suffix == '.gif' else CODEC_MEAN_TOL
  assert np.abs(loaded.astype(float) - frames).mean() < tolerance
  assert video.load_video(path, stride=3).shape[0] == 2


def test_error_missing_path(tmp_path):
  with pytest.raises(UserInputError, match=r'nope\.mp4: no such file or folder'):
    video.load_video(tmp_path / 'nope.mp4')


def test_error_undecodable_video(tmp_path):
  path = tmp_path / 'fake.mp4'
  path.write_text('this is not a video')
  with pytest.raises(UserInputError, match=r'fake\.mp4: cannot decode this video'):
    video.load_video(path)


def test_error_unsupported_suffix(tmp_path):
  path = tmp_path / 'notes.txt'
  path.write_text('x')
  with pytest.raises(UserInputError, match='unsupported file type'):
    video.load_video(path)


def test_error_fewer_than_two_frames(tmp_path):
  folder = _write_folder(tmp_path / 'one', _frames(1))
  with pytest.raises(UserInputError, match='only 1 frame.*at least 2'):
    video.load_video(folder)
  folder = _write_folder(tmp_path / 'three', _frames(3))
  with pytest.raises(UserInputError, match='only 1 frame'):
    video.load_video(folder, stride=5)


def test_error_empty_folder(tmp_path):
  (tmp_path / 'empty').mkdir()
  (tmp_path / 'empty' / 'readme.txt').write_text('no frames')
  with pytest.raises(UserInputError, match='empty: no frames found'):
    video.load_video(tmp_path / 'empty')


def test_error_mixed_sizes_names_first_offender(tmp_path):
  folder = _write_folder(tmp_path / 'mixed', _frames(4))
  Image.fromarray(_frames(1, 20, 32)[0]).save(folder / '00002.png')
  Image.fromarray(_frames(1, 20, 32)[0]).save(folder / '00003.png')
  with pytest.raises(UserInputError, match=r'00002\.png: frame size 32x20 differs from 00000\.png'):
    video.load_video(folder)


@pytest.mark.parametrize('mode', ['I;16', 'RGBA', 'CMYK', 'LA'])
def test_error_non_rgb_mode(tmp_path, mode):
  folder = _write_folder(tmp_path / 'f', _frames(3))
  bad = Image.fromarray(_frames(1)[0]).convert('RGBA' if mode == 'LA' else 'RGB')
  if mode == 'I;16':
    bad = Image.fromarray((_frames(1)[0, ..., 0].astype(np.uint16) * 257))
    assert bad.mode.startswith('I;16')
  else:
    bad = bad.convert(mode)
  suffix = '.jpg' if mode == 'CMYK' else '.png'
  (folder / '00001.png').unlink()
  bad.save(folder / f'00001{suffix}')
  with pytest.raises(UserInputError, match=r"00001\.(png|jpg): image mode .* not 8-bit RGB"):
    video.load_video(folder)


def test_error_palette_with_transparency(tmp_path):
  folder = _write_folder(tmp_path / 'f', _frames(3))
  image = Image.fromarray(_frames(1)[0]).convert('P')
  image.info['transparency'] = 0
  image.save(folder / '00001.png', transparency=0)
  with pytest.raises(UserInputError, match='palette image with transparency'):
    video.load_video(folder)


@pytest.mark.parametrize('kwargs,field', [({'stride': 0}, 'data.stride'),
                                          ({'max_frames': 1}, 'data.max_frames'),
                                          ({'resize': (10,)}, 'data.resize'),
                                          ({'max_side': -3}, 'data.max_side')])
def test_error_bad_selection(tmp_path, kwargs, field):
  folder = _write_folder(tmp_path / 'f', _frames(3))
  with pytest.raises(UserInputError, match=field):
    video.load_video(folder, **kwargs)
