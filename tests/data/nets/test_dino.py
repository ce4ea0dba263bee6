"""Tests of nets/dino.py and nets/dino_convert.py: parity with PyTorch, resizing, converter layouts,
batching, compilation count, errors, and DINO features in the preprocess stage.

The PyTorch outputs come from dino_fixtures.npz (make_dino_fixtures.py; no torch here): timm's
ViT-S/16 on random weights that dino_random_state.py regenerates from a seed, with DINO's
positional-embedding interpolation, on crops of scikit-image photos.
"""

import json
import logging
from pathlib import Path

import cv2
import jax
import numpy as np
import pytest
import skimage.data

import dino_random_state
from omnimotion_jax import pipeline
from omnimotion_jax.config import load_config
from omnimotion_jax.data import filtering
from omnimotion_jax.data import preprocess as preprocess_lib
from omnimotion_jax.data import store as store_lib
from omnimotion_jax.data.nets import dino
from omnimotion_jax.data.nets import dino_convert
from omnimotion_jax.data.nets import weights as weights_lib
from omnimotion_jax.errors import UserInputError

FIXTURES = Path(__file__).with_name('dino_fixtures.npz')
# Parity tolerance: max |jax - torch| <= PARITY_RTOL * max |torch| over the features, and
# per element |jax - torch| <= PARITY_RTOL * (|torch| + max |torch|) (relative, with that floor).
PARITY_RTOL = 1e-4
STORED_CHANNELS = slice(None, None, 8)  # make_dino_fixtures.CHANNELS.


@pytest.fixture(scope='module')
def fixtures():
  with np.load(FIXTURES, allow_pickle=False) as data:
    return {k: data[k] for k in data.files}


@pytest.fixture(scope='module')
def official(fixtures):
  """The random official-layout state dict the fixtures were made with."""
  spec = [(key, tuple(shape)) for key, shape in json.loads(str(fixtures['spec']))]
  state = dino_random_state.random_state(spec, int(fixtures['seed']))
  np.testing.assert_allclose(dino_random_state.checksums(state), fixtures['checksums'],
                             rtol=1e-12, err_msg='numpy random stream changed: rerun the script')
  return state


@pytest.fixture(scope='module')
def variables(official):
  return dino_convert.convert_state_dict(official)[0]


def _frames(fixtures, name):
  frames = []
  for photo, row, col, height, width, repeat in json.loads(str(fixtures['crops']))[name]:
    crop = getattr(skimage.data, photo)()[row:row + height, col:col + width]
    frames.append(np.repeat(np.repeat(crop, repeat, axis=0), repeat, axis=1))
  frames = np.stack(frames)
  np.testing.assert_array_equal(frames.astype(np.int64).sum(axis=(1, 2, 3)),
                                fixtures[f'{name}_frames_sum'])
  return frames


def _assert_parity(got, want):
  scale = np.abs(want).max()
  assert np.abs(got - want).max() <= PARITY_RTOL * scale
  np.testing.assert_allclose(got, want, rtol=PARITY_RTOL, atol=PARITY_RTOL * scale)


def _shallow(variables, depth):
  """The first `depth` blocks of a DinoViT (cheap runs of the batching and pipeline code)."""
  params = {k: v for k, v in variables['params'].items()
            if not k.startswith('blocks_') or int(k.split('_')[1]) < depth}
  return {'params': params}


# --- parity with PyTorch ---------------------------------------------------------------------

def test_features_match_pytorch_on_a_small_non_square_grid(fixtures, variables):
  frames = _frames(fixtures, 'small')  # 160x208 px -> 10x13 patches, kept at that size.
  got = dino.dino_features(frames, variables, batch_size=2, size=frames.shape[1:3])
  assert got.shape == fixtures['small_features'].shape == (2, 10, 13, 384)
  _assert_parity(got, fixtures['small_features'])


def test_features_match_pytorch_at_the_reference_size(fixtures, variables):
  frames = _frames(fixtures, 'large')  # 480x704 px: the reference's resize rule keeps it.
  assert dino.reference_size(*frames.shape[1:3]) == (480, 704)
  got = dino.dino_features(frames, variables, batch_size=1)
  assert got.shape == (1, 30, 44, 384)
  _assert_parity(got[..., STORED_CHANNELS], fixtures['large_features'])


@pytest.mark.parametrize('name,image_size', [('small', (160, 208)), ('large', (480, 704))])
def test_positional_embedding_is_interpolated_as_dino_does(fixtures, official, name, image_size):
  grid = (image_size[0] // 16, image_size[1] // 16)
  got = np.asarray(dino.interpolate_pos_embed(official['pos_embed'][0], grid, image_size))
  want = fixtures[f'{name}_pos_embed']
  np.testing.assert_allclose(got[:, STORED_CHANNELS], want, rtol=0, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize('rows,cols', [(10, 13), (30, 44), (14, 14), (3, 60), (28, 30)])
def test_bicubic_matrix_is_pytorchs_scale_factor_bicubic(fixtures, rows, cols):
  # float64 F.interpolate(scale_factor=((rows + 0.1) / 14, (cols + 0.1) / 14), mode='bicubic').
  source = fixtures['bicubic_input']
  r = dino.bicubic_matrix(14, rows, (rows + 0.1) / 14)
  c = dino.bicubic_matrix(14, cols, (cols + 0.1) / 14)
  np.testing.assert_allclose(r.sum(axis=1), 1.0, atol=1e-12)
  got = np.einsum('ai,bj,ijc->abc', r, c, source)
  np.testing.assert_allclose(got, fixtures[f'bicubic_{rows}x{cols}'], rtol=0, atol=1e-12)


def test_positional_embedding_kept_only_for_a_square_224_input(fixtures, official):
  pos = official['pos_embed'][0]
  np.testing.assert_array_equal(dino.interpolate_pos_embed(pos, (14, 14), (224, 224)), pos)
  # 224x232 px has a 14x14 grid too but H != W: DINO resamples with scale 14.1 / 14 (not the
  # identity), as the float64 case above checks.
  moved = np.asarray(dino.interpolate_pos_embed(pos, (14, 14), (224, 232)))
  np.testing.assert_array_equal(moved[0], pos[0])  # CLS entry.
  assert np.abs(moved - pos).max() > 1e-3


# --- resizing and normalisation --------------------------------------------------------------

@pytest.mark.parametrize('size,expected', [
    ((480, 854), (480, 832)),  # Landscape: height 480, width floor(854 / 64) * 64.
    ((854, 480), (832, 480)),  # Portrait: width 480.
    ((256, 256), (480, 448)),  # Square: the landscape branch, aspect not kept.
    ((300, 451), (480, 704)),
])
def test_reference_resize_rule(size, expected):
  assert dino.reference_size(*size) == expected
  frames = np.random.default_rng(0).integers(0, 256, (2, *size, 3), dtype=np.uint8)
  resized = dino.resize_frames(frames, expected)
  assert resized.dtype == np.uint8 and resized.shape == (2, *expected, 3)
  np.testing.assert_array_equal(resized[1], cv2.resize(frames[1], expected[::-1]))


def test_features_of_a_256_frame_use_the_reference_size(variables):
  frames = np.random.default_rng(1).integers(0, 256, (1, 256, 256, 3), dtype=np.uint8)
  shallow = _shallow(variables, 1)
  got = dino.dino_features(frames, shallow, batch_size=1)
  assert got.shape == (1, 30, 28, 384) and got.dtype == np.float32
  direct = jax.jit(dino.DinoViT(depth=1).apply)(shallow, dino.normalize(
      dino.resize_frames(frames, (480, 448))))
  np.testing.assert_allclose(got, direct, rtol=1e-5, atol=1e-5)


def test_normalisation_uses_the_reference_constants():
  pixel = np.array([[[0, 128, 255]]], np.uint8)
  want = (np.array([0, 128, 255]) / 255.0 - [0.485, 0.456, 0.406]) / [0.228, 0.224, 0.225]
  np.testing.assert_allclose(np.asarray(dino.normalize(pixel))[0, 0], want, rtol=1e-6)


# --- converter -------------------------------------------------------------------------------

def _checkpoint(official):
  """A DINO training checkpoint: teacher/student with prefixes and head entries, extras."""
  head = {'head.mlp.0.weight': np.ones((2048, 384), np.float32),
          'head.last_layer.weight_g': np.ones((65536, 1), np.float32)}
  teacher = {f'backbone.{k}': v for k, v in official.items()} | head
  student = {f'module.backbone.{k}': v + 1 for k, v in official.items()}
  student |= {f'module.{k}': v for k, v in head.items()}
  return {'teacher': teacher, 'student': student, 'epoch': np.array(100)}


def test_converter_layouts_give_identical_variables(fixtures, official, variables):
  timm_spec = json.loads(str(fixtures['timm_spec']))
  timm_extra = {key: np.zeros(shape, np.float32) for key, shape in timm_spec
                if key not in official}
  assert set(timm_extra) == {'head.weight', 'head.bias'}
  checkpoint = _checkpoint(official)
  flat_teacher = {f'teacher.{k}': v for k, v in checkpoint['teacher'].items()}
  cases = {'official': official, 'timm': official | timm_extra,
           'dino_checkpoint': checkpoint, 'flattened checkpoint': flat_teacher,
           'student only': {f'module.backbone.{k}': v for k, v in official.items()}}
  expected_layout = {'official': 'official', 'timm': 'timm'}
  for name, state in cases.items():
    got, layout = dino_convert.convert_state_dict(state)
    assert layout == expected_layout.get(name, 'dino_checkpoint'), name
    jax.tree_util.tree_map(np.testing.assert_array_equal, got, variables)
  # The teacher is used, not the (different) student.
  assert not np.array_equal(
      dino_convert.convert_state_dict({'student': checkpoint['student']})[0]['params']['norm']
      ['scale'], variables['params']['norm']['scale'])
  params = variables['params']
  np.testing.assert_array_equal(params['blocks_3']['attn']['qkv']['kernel'],
                                official['blocks.3.attn.qkv.weight'].T)
  np.testing.assert_array_equal(params['patch_embed']['kernel'][2, 5, 1],
                                official['patch_embed.proj.weight'][:, 1, 2, 5])
  np.testing.assert_array_equal(params['blocks_0']['norm1']['scale'],
                                official['blocks.0.norm1.weight'])


@pytest.mark.parametrize('change,message', [
    (lambda s: {k: v for k, v in s.items() if k not in ('norm.weight', 'blocks.11.mlp.fc2.bias')},
     "missing 'blocks.11.mlp.fc2.bias', 'norm.weight'"),
    (lambda s: s | {'blocks.12.norm1.weight': s['norm.weight']},
     "unexpected 'blocks.12.norm1.weight'"),
    (lambda s: {'fnet.conv1.weight': np.zeros((64, 3, 7, 7), np.float32)},
     "missing 'cls_token', 'pos_embed', 'patch_embed.proj.weight', 'patch_embed.proj.bias' and "
     "146 more; unexpected 'fnet.conv1.weight'"),
    (lambda s: s | {'pos_embed': np.zeros((1, 785, 384), np.float32)},  # ViT-S/8.
     'params/pos_embed (1, 785, 384) (ViT-S/16: (1, 197, 384))'),
])
def test_converter_errors_name_the_keys(official, change, message):
  with pytest.raises(UserInputError) as error:
    dino_convert.convert_state_dict(change(official))
  assert message in str(error.value) and '\n' not in str(error.value)


# --- batching, devices, compilation ----------------------------------------------------------

def test_batched_and_sharded_equal_one_by_one(fixtures, variables):
  frames = _frames(fixtures, 'small')
  frames = np.concatenate([frames, frames[:1, ::-1]])  # 3 frames.
  shallow, size = _shallow(variables, 2), frames.shape[1:3]
  cpu = jax.devices('cpu')
  one = np.concatenate([dino.dino_features(f[None], shallow, batch_size=1, size=size,
                                           devices=cpu[:1]) for f in frames])
  for batch, devices in [(2, cpu[:1]), (4, cpu[:1]), (2, cpu[:2]), (3, cpu[:2])]:
    got = dino.dino_features(frames, shallow, batch_size=batch, size=size, devices=devices)
    np.testing.assert_allclose(got, one, rtol=1e-5, atol=1e-5 * np.abs(one).max(),
                               err_msg=f'batch {batch} on {len(devices)} devices')


def test_one_compilation_for_several_batches(fixtures, variables):
  frames = np.concatenate([_frames(fixtures, 'small')] * 3)  # 6 frames.
  shallow, devices = _shallow(variables, 3), tuple(jax.devices('cpu')[:1])
  dino.compiled_features.cache_clear()
  dino.dino_features(frames[:5], shallow, batch_size=2, size=(160, 208), devices=devices)
  dino.dino_features(frames, shallow, batch_size=2, size=(160, 208), devices=devices)
  assert dino.compiled_features(3, devices)._cache_size() == 1  # pylint: disable=protected-access


# --- weights files and the preprocess stage ---------------------------------------------------

def test_load_variables_round_trip_and_errors(tmp_path, variables):
  path = weights_lib.save_weights(tmp_path / 'dino.npz', variables, 'dino_vits16',
                                  'dino_deitsmall16_pretrain.pth', 'official')
  jax.tree_util.tree_map(np.testing.assert_array_equal, dino.load_variables(path), variables)
  hint = 'omnimotion-jax convert-weights --kind dino_vits16'
  for bad, words in [(tmp_path / 'missing.npz', ['missing.npz', 'not found', hint]),
                     (None, ['data.dino_weights is not set', hint])]:
    with pytest.raises(UserInputError) as error:
      dino.load_variables(bad)
    assert all(w in str(error.value) for w in words) and '\n' not in str(error.value)
  other = weights_lib.save_weights(tmp_path / 'raft.npz', variables, 'raft', 'x.pth', 'official')
  with pytest.raises(UserInputError, match="raft.npz: holds 'raft' weights"):
    dino.load_variables(other)
  broken = {'params': {k: v for k, v in variables['params'].items() if k != 'norm'}}
  broken_path = weights_lib.save_weights(tmp_path / 'broken.npz', broken, 'dino_vits16', 'x', 'y')
  with pytest.raises(UserInputError,
                     match=r'broken.npz: not a complete dino_vits16 weights file .* params/norm/'):
    dino.load_variables(broken_path)


def test_preprocess_computes_dino_features_for_the_filter(tmp_path, variables, monkeypatch,
                                                          caplog):
  frames = skimage.data.astronaut()[100:148, 100:164][None].repeat(5, axis=0)  # 48x64 px.
  frames = np.stack([np.roll(f, k, axis=1) for k, f in enumerate(frames)])
  shallow = _shallow(variables, 1)
  weights_path = weights_lib.save_weights(tmp_path / 'dino.npz', shallow, 'dino_vits16', 'x', 'y')
  config = load_config('cpu_tiny')
  config.data.dino_weights = str(weights_path)
  config.data.dino_batch = 2
  seen = {}
  original_filter, original_chain = preprocess_lib.filter_pairs, filtering.chain_flows

  def filter_pairs(pairs, direct, rows, c, features):
    seen['filter'] = features
    return original_filter(pairs, direct, rows, c, features)

  def chain_flows(*args, **kwargs):
    seen['chain'] = kwargs['features']
    return original_chain(*args, **kwargs)

  monkeypatch.setattr(preprocess_lib, 'filter_pairs', filter_pairs)
  monkeypatch.setattr(filtering, 'chain_flows', chain_flows)
  workdir = tmp_path / 'w'
  store_path = pipeline.preprocess_stage(frames, workdir, config)
  np.testing.assert_array_equal(store_lib.load_store(store_path).frames, frames)
  want = dino.dino_features(frames, shallow, batch_size=2)
  assert want.shape == (5, 30, 40, 384)  # 48x64 px -> 480x640 px by the reference rule.
  np.testing.assert_array_equal(seen['filter'], want)
  np.testing.assert_array_equal(seen['chain'], want)
  meta = store_lib.read_meta(store_path)
  assert meta['features'] == f'dino_vits16:{weights_path}'
  # Same weights: nothing to do. Other weights at the same path: preprocessed again.
  caplog.clear()
  with caplog.at_level(logging.INFO, logger='omnimotion_jax'):
    pipeline.preprocess_stage(frames, workdir, config)
  assert 'already preprocessed' in caplog.text
  changed = jax.tree_util.tree_map(lambda v: v * 1.01, shallow)
  weights_lib.save_weights(weights_path, changed, 'dino_vits16', 'x', 'y')
  seen.clear()
  pipeline.preprocess_stage(frames, workdir, config)
  assert 'filter' in seen and store_lib.read_meta(store_path)['preprocess_key'] != meta[
      'preprocess_key']
  # A missing weights file fails before any work, naming the file and the converter.
  config.data.dino_weights = str(tmp_path / 'nope.npz')
  with pytest.raises(UserInputError, match=r'nope.npz: weights file not found .*convert-weights'):
    pipeline.preprocess_stage(frames, tmp_path / 'w2', config)
  config.data.dino_weights, config.data.dino_batch = str(weights_path), 0
  with pytest.raises(UserInputError, match='data.dino_batch=0'):
    pipeline.preprocess_stage(frames, tmp_path / 'w2', config)
