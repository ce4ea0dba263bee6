"""Tests of flow.py: every backend returns (dx, dy) px flows from frame i to frame j."""

import json

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from omnimotion_jax.data import flow as flow_lib
from omnimotion_jax.data import store as store_lib
from omnimotion_jax.config import load_config
from omnimotion_jax.errors import UserInputError
from omnimotion_jax import pipeline

TEX_H, TEX_W = 96, 128
MARGIN = 12  # px ignored at the border (pixels moving in / out of view)
DIS_EPE_TOL = 0.5  # px, mean end-point error in the interior


def _texture_pair(dx, dy):
  """Two crops of a photo where the content moves by (dx, dy) px from frame 0 to frame 1."""
  image = skdata.astronaut()
  y0, x0 = 200, 150
  frame0 = image[y0:y0 + TEX_H, x0:x0 + TEX_W]
  # frame1(q) = image(q + (x0, y0) - d) = frame0(q - d), sub-pixel via bilinear resampling.
  matrix = np.float32([[1, 0, x0 - dx], [0, 1, y0 - dy]])
  frame1 = cv2.warpAffine(image, matrix, (TEX_W, TEX_H),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
  return np.stack([frame0, frame1])


@pytest.mark.parametrize('method', ['dis', 'deepflow'])
@pytest.mark.parametrize('shift', [(3.0, -2.0), (1.5, 0.75)])
def test_computed_backends_recover_a_shift(method, shift):
  frames = _texture_pair(*shift)
  backend = flow_lib.make_backend(method, frames, dis_preset='medium')
  flow = backend.flow(0, 1)
  assert flow.dtype == np.float32 and flow.shape == (TEX_H, TEX_W, 2)
  error = np.linalg.norm(flow - np.float32(shift), axis=-1)[MARGIN:-MARGIN, MARGIN:-MARGIN]
  assert error.mean() < DIS_EPE_TOL
  back = backend.flow(1, 0)[MARGIN:-MARGIN, MARGIN:-MARGIN]
  assert np.linalg.norm(back + np.float32(shift), axis=-1).mean() < DIS_EPE_TOL
  assert backend.cacheable and backend.fingerprint().startswith(method)


def test_backend_name_and_preset_errors():
  frames = np.zeros((2, 8, 8, 3), np.uint8)
  with pytest.raises(UserInputError, match='data.flow_backend=.flownet.: unknown backend'):
    flow_lib.make_backend('flownet', frames)
  with pytest.raises(UserInputError, match='data.dis_preset=.slow.: unknown DIS preset'):
    flow_lib.make_backend('dis', frames, dis_preset='slow')


def test_resize_flow_scales_vectors():
  flow = np.zeros((10, 20, 2), np.float32)
  flow[..., 0], flow[..., 1] = 4.0, -2.0
  small = flow_lib.resize_flow(flow, (5, 5))
  assert small.shape == (5, 5, 2)
  np.testing.assert_allclose(small[..., 0], 1.0)
  np.testing.assert_allclose(small[..., 1], -1.0)


# --- files backend --------------------------------------------------------------------------------

def _files_setup(tmp_path, size=(8, 10)):
  folder = tmp_path / 'flows'
  folder.mkdir()
  rng = np.random.default_rng(0)
  flows = {}
  for i in (0, 2, 4):
    for j in (0, 2, 4):
      if i != j:
        flows[(i, j)] = rng.normal(size=size + (2,)).astype(np.float32)
        np.save(folder / f'{i:05d}_{j:05d}.npy', flows[(i, j)])
  return folder, flows


def test_files_backend_uses_input_frame_indices(tmp_path):
  folder, flows = _files_setup(tmp_path)
  frames = np.zeros((3, 8, 10, 3), np.uint8)
  backend = flow_lib.make_backend('files', frames, flow_dir=folder, frame_indices=[0, 2, 4])
  np.testing.assert_array_equal(backend.flow(1, 2), flows[(2, 4)])
  np.testing.assert_array_equal(backend.flow(2, 0), flows[(4, 0)])


def test_files_backend_resizes_input_size_flows(tmp_path):
  folder, flows = _files_setup(tmp_path, size=(16, 20))
  frames = np.zeros((3, 8, 10, 3), np.uint8)
  backend = flow_lib.make_backend('files', frames, flow_dir=folder, frame_indices=[0, 2, 4],
                                  input_size=(16, 20))
  expected = flow_lib.resize_flow(flows[(0, 2)], (8, 10))
  np.testing.assert_allclose(backend.flow(0, 1), expected)
  assert np.abs(backend.flow(0, 1)).mean() < np.abs(flows[(0, 2)]).mean()  # vectors halved


def test_files_backend_errors(tmp_path):
  folder, _ = _files_setup(tmp_path)
  frames = np.zeros((3, 8, 10, 3), np.uint8)
  with pytest.raises(UserInputError, match='needs a flow folder'):
    flow_lib.make_backend('files', frames)
  with pytest.raises(UserInputError, match='nowhere: flow folder not found'):
    flow_lib.make_backend('files', frames, flow_dir=tmp_path / 'nowhere')
  with pytest.raises(UserInputError, match='pattern .* is invalid'):
    flow_lib.make_backend('files', frames, flow_dir=folder, pattern='{k}.npy')
  backend = flow_lib.make_backend('files', frames, flow_dir=folder, frame_indices=[0, 2, 5])
  with pytest.raises(UserInputError, match=r'00000_00005\.npy: flow file not found'):
    backend.flow(0, 2)
  backend = flow_lib.make_backend('files', frames, flow_dir=folder, frame_indices=[0, 2, 4])
  np.save(folder / '00000_00002.npy', np.zeros((8, 10, 3), np.float32))
  with pytest.raises(UserInputError, match=r'00000_00002\.npy: flow has shape \(8, 10, 3\)'):
    backend.flow(0, 1)
  np.save(folder / '00000_00002.npy', np.full((8, 10, 2), np.nan, np.float32))
  with pytest.raises(UserInputError, match='NaN or inf'):
    backend.flow(0, 1)
  (folder / '00000_00002.npy').write_text('garbage')
  with pytest.raises(UserInputError, match='not a readable .npy'):
    backend.flow(0, 1)


# --- omnimotion_dir backend -------------------------------------------------------------------

SEQ_N, SEQ_H, SEQ_W = 4, 12, 16


def _make_sequence(root, suffix='.png', with_masks=True, stem_names=False):
  """A sequence folder in the reference layout with random flows and disjoint R/G masks."""
  rng = np.random.default_rng(1)
  (root / 'color').mkdir(parents=True)
  (root / 'raft_exhaustive').mkdir()
  if with_masks:
    (root / 'raft_masks').mkdir()
  names = [f'{t:05d}{suffix}' for t in range(SEQ_N)]
  for name in names:
    Image.fromarray(rng.integers(0, 255, (SEQ_H, SEQ_W, 3), dtype=np.uint8)).save(root / 'color' / name)
  truth = {}
  for i in range(SEQ_N):
    for j in range(SEQ_N):
      if i == j:
        continue
      a, b = (names[i][:-len(suffix)], names[j][:-len(suffix)]) if stem_names else (names[i], names[j])
      flow = rng.normal(scale=3, size=(SEQ_H, SEQ_W, 2)).astype(np.float32)
      np.save(root / 'raft_exhaustive' / f'{a}_{b}.npy', flow)
      cycle = rng.random((SEQ_H, SEQ_W)) < 0.6
      occluded = (rng.random((SEQ_H, SEQ_W)) < 0.3) & ~cycle
      if with_masks:
        rgb = np.zeros((SEQ_H, SEQ_W, 3), np.uint8)
        rgb[..., 0] = 255 * cycle
        rgb[..., 1] = 255 * occluded
        Image.fromarray(rgb).save(root / 'raft_masks' / f'{a}_{b}.png')
      truth[(i, j)] = (flow, cycle, occluded)
  # The reference's extra files (not needed, must not confuse the reader).
  (root / 'count_maps').mkdir()
  (root / 'flow_stats.json').write_text(json.dumps({}))
  return truth


def _config(**data_overrides):
  config = load_config('default')
  for key, value in data_overrides.items():
    config.data[key] = value
  return config


def test_omnimotion_dir_backend_reads_flows_and_masks(tmp_path):
  # 'color' in a parent folder name must not matter (the reference's path-substring hack).
  seq = tmp_path / 'color_videos' / 'seq'
  truth = _make_sequence(seq, suffix='.jpg')
  frames = np.zeros((SEQ_N, SEQ_H, SEQ_W, 3), np.uint8)
  backend = flow_lib.make_backend('omnimotion_dir', frames, seq_dir=seq)
  assert backend.has_masks
  np.testing.assert_array_equal(backend.flow(1, 3), truth[(1, 3)][0])
  cycle, occluded = backend.masks(3, 0)
  np.testing.assert_array_equal(cycle, truth[(3, 0)][1])
  np.testing.assert_array_equal(occluded, truth[(3, 0)][2])


def test_omnimotion_dir_preprocess_roundtrip(tmp_path):
  seq = tmp_path / 'seq'
  truth = _make_sequence(seq, stem_names=True)
  cfg = _config(flow_backend='omnimotion_dir', pair_plan='exhaustive')
  path = pipeline.preprocess_stage(seq, tmp_path / 'work', cfg)
  data = store_lib.load_store(path)
  assert data.num_pairs == SEQ_N * (SEQ_N - 1) and data.meta['masks_from'] == 'omnimotion_dir'
  expected_counts = np.zeros((SEQ_N, SEQ_H, SEQ_W), int)
  for k, (i, j) in enumerate(data.pairs):
    flow, cycle, occluded = truth[(int(i), int(j))]
    np.testing.assert_array_equal(data.flows[k], flow.astype(np.float16))
    np.testing.assert_array_equal(data.cycle[k], cycle)
    np.testing.assert_array_equal(data.occluded[k], occluded)
    assert data.pair_counts[k] == (cycle | occluded).sum()
    expected_counts[i] += cycle | occluded
  np.testing.assert_array_equal(data.counts, expected_counts)


def test_omnimotion_dir_without_masks_is_filtered(tmp_path):
  seq = tmp_path / 'seq'
  _make_sequence(seq, with_masks=False)
  cfg = _config(flow_backend='omnimotion_dir', pair_plan='exhaustive')
  data = store_lib.load_store(pipeline.preprocess_stage(seq, tmp_path / 'work', cfg))
  assert data.meta['masks_from'] == 'filter' and data.num_pairs == SEQ_N * (SEQ_N - 1)


def test_omnimotion_dir_errors(tmp_path):
  frames = np.zeros((SEQ_N, SEQ_H, SEQ_W, 3), np.uint8)
  (tmp_path / 'plain').mkdir()
  with pytest.raises(UserInputError, match=r'plain: not an OmniMotion sequence folder \(no color/\)'):
    flow_lib.make_backend('omnimotion_dir', frames, seq_dir=tmp_path / 'plain')
  seq = tmp_path / 'seq'
  _make_sequence(seq)
  (seq / 'raft_exhaustive' / '00001.png_00002.png.npy').unlink()
  backend = flow_lib.make_backend('omnimotion_dir', frames, seq_dir=seq)
  with pytest.raises(UserInputError, match=r'00001\.png_00002\.png\.npy: missing'):
    backend.flow(1, 2)
