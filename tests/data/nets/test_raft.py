"""Tests of RAFT in Flax (nets/raft.py, raft_infer.py, raft_convert.py) and the 'raft' backend.

Parity with torchvision's RAFT runs without PyTorch: fixtures/ holds torchvision's flows on two
real frames for random weights that raft_fixture_weights.random_state rebuilds here from the
stored (key, shape) lists (make_raft_fixtures.py writes them; its docstring says how to rerun).
"""

import functools
import json
import re
from pathlib import Path

import jax
import numpy as np
import pytest

import raft_fixture_weights
from omnimotion_jax import cli
from omnimotion_jax import pipeline
from omnimotion_jax.config import load_config
from omnimotion_jax.data import flow as flow_lib
from omnimotion_jax.data import pairs as pairs_lib
from omnimotion_jax.data import preprocess as preprocess_lib
from omnimotion_jax.data import store as store_lib
from omnimotion_jax.data.nets import raft
from omnimotion_jax.data.nets import raft_convert
from omnimotion_jax.data.nets import raft_infer
from omnimotion_jax.data.nets import weights as weights_lib
from omnimotion_jax.errors import UserInputError

FIXTURES = Path(__file__).resolve().parent / 'fixtures'
META = json.loads((FIXTURES / 'raft_keys.json').read_text())
with np.load(FIXTURES / 'raft_parity.npz') as _npz:
  PARITY = {name: _npz[name] for name in _npz.files}
FRAMES = PARITY['frames']  # uint8 [2, 123, 171, 3]
TOL_PX = 1e-3  # The acceptance bound of the port (flows in px).
ITERS = META['iters']
KINDS = ('raft', 'raft_small')


@pytest.fixture(scope='module')
def states():
  """torchvision-layout random state dicts, as the fixture script loaded them."""
  return {kind: raft_fixture_weights.random_state(META['models'][kind]) for kind in KINDS}


@pytest.fixture(scope='module')
def variables(states):
  return {kind: raft_convert.convert_state_dict(states[kind], kind)[0] for kind in KINDS}


@pytest.fixture(scope='module')
def weights_files(variables, tmp_path_factory):
  folder = tmp_path_factory.mktemp('raft_weights')
  return {kind: weights_lib.save_weights(folder / f'{kind}.npz', variables[kind], kind,
                                         'random.pth', 'torchvision') for kind in KINDS}


def _padded_features(kind, variables):
  padding = raft_infer.input_padding(*FRAMES.shape[1:3])
  return raft_infer.encode_frames(raft.MODELS[kind], variables[kind], padding.pad(FRAMES),
                                  devices=jax.devices()[:1])


def _per_iteration(kind, variables, features, flow_init=None):
  """[iters, Hp, Wp, 2] flows of pair (0, 1) after every iteration, on one device."""
  up, low = raft_infer.pair_flows(raft.MODELS[kind], variables[kind], features, [[0, 1]],
                                  iters=ITERS, chunk=1, flow_init=flow_init, all_iters=True,
                                  devices=jax.devices()[:1])
  return up[0], low[0]


def _backend(frames, weights_files, kind='raft_small', **options):
  options = {'iters': ITERS, 'chunk': 2, **options}
  return flow_lib.make_backend('raft', frames, raft=flow_lib.RaftOptions(
      str(weights_files[kind]), kind, **options))


def _three_frames():
  """The fixture pair plus the first frame rolled by (3, -5) px."""
  return np.concatenate([FRAMES, np.roll(FRAMES[:1], (3, -5), axis=(1, 2))])


# --- parity with torchvision ----------------------------------------------------------------------

@pytest.mark.parametrize('kind', KINDS)
def test_parity_with_torchvision_at_every_iteration(kind, variables):
  features = _padded_features(kind, variables)
  flows, _ = _per_iteration(kind, variables, features)
  step = META['subsample']
  reference = PARITY[f'{kind}_iters']
  error = np.abs(flows[:, ::step, ::step] - reference).max(axis=(1, 2, 3))
  print(f'{kind}: max |flow - torchvision| per iteration (px): {np.array2string(error)}')
  assert error.shape == (ITERS,) and np.all(error < TOL_PX)
  assert np.abs(reference[-1]).max() > 1  # Flows that move, not a trivial zero field.


def test_input_padding_is_the_official_input_padder():
  for height, width in [(123, 171), (128, 176), (1, 7), (480, 854)]:
    pad_ht = (((height // 8) + 1) * 8 - height) % 8  # Official core/utils/utils.py.
    pad_wd = (((width // 8) + 1) * 8 - width) % 8
    padding = raft_infer.input_padding(height, width)
    assert (padding.left, padding.right) == (pad_wd // 2, pad_wd - pad_wd // 2)
    assert (padding.top, padding.bottom) == (pad_ht // 2, pad_ht - pad_ht // 2)
  padding = raft_infer.input_padding(123, 171)
  assert padding == raft_infer.Padding(2, 3, 2, 3)  # The odd pixel at the bottom / right.
  padded = padding.pad(FRAMES)
  assert padded.shape == (2, 128, 176, 3)
  np.testing.assert_array_equal(padded[:, :2, 2:-3], np.repeat(FRAMES[:, :1], 2, axis=1))
  np.testing.assert_array_equal(padded[:, 2:-3, -3:], np.repeat(FRAMES[:, :, -1:], 3, axis=2))
  np.testing.assert_array_equal(padding.unpad(padded), FRAMES)


def test_backend_pads_runs_and_unpads_as_the_reference(weights_files):
  """Flow (0, 1) at the frames' own size (123x171) equals torchvision's on the padded frames,
  cropped as the official InputPadder crops."""
  backend = _backend(FRAMES, weights_files)
  flow = backend.flow(0, 1)
  assert flow.shape == FRAMES.shape[1:3] + (2,) and flow.dtype == np.float32
  error = np.abs(flow - PARITY['raft_small_final']).max()
  print(f'raft_small final flow, unpadded: max |flow - torchvision| {error:.2e} px')
  assert error < TOL_PX


# --- batched pairs ----------------------------------------------------------------------------

def test_batched_pairs_equal_pair_by_pair_and_compile_once(weights_files, variables):
  """All 6 ordered pairs of 3 frames in chunks of 2 (3 calls, over both test devices) equal the
  official per-pair path (both encoders per pair, flow_init=None, so zero starts equal none),
  and the chunk function compiles once for this video size."""
  frames = _three_frames()
  backend = _backend(frames, weights_files)
  fn = raft_infer.compiled_pair_fn(raft.MODELS['raft_small'], ITERS, False, backend.devices)
  before = fn._cache_size()  # pylint: disable=protected-access
  pairs = pairs_lib.make_plan('exhaustive', 3).pairs
  batched = backend.flows(pairs)
  backend.flows(pairs[:1])
  model = raft.RAFT(raft.MODELS['raft_small'])
  single = jax.jit(lambda v, a, b: raft.raft_flow(model, v, a, b, ITERS))
  padding = raft_infer.input_padding(*frames.shape[1:3])
  images = padding.pad(frames).astype(np.float32)
  for k, (i, j) in enumerate(pairs):
    _, flow = single(variables['raft_small'], images[i], images[j])
    np.testing.assert_allclose(batched[k], padding.unpad(np.asarray(flow)), atol=1e-4)
  assert fn._cache_size() - before <= 1  # pylint: disable=protected-access
  assert len(backend.devices) == 2  # The test session's two CPU devices: pairs were sharded.


# --- warm start -------------------------------------------------------------------------------

def test_warm_start_from_the_flow_changes_the_first_iteration(variables):
  features = _padded_features('raft', variables)
  cold, low = _per_iteration('raft', variables, features)
  zero, _ = _per_iteration('raft', variables, features, np.zeros((1,) + low.shape, np.float32))
  np.testing.assert_array_equal(zero, cold)  # A zero start is no start.
  warm, _ = _per_iteration('raft', variables, features, low[None])
  first_change = np.abs(warm[0] - cold[0]).max()
  assert first_change > 0.5  # px
  # Starting from its own final estimate, the first iteration lands near it.
  assert np.abs(warm[0] - cold[-1]).mean() < np.abs(cold[0] - cold[-1]).mean()


def test_sweep_sources_follow_the_reference_sweeps():
  pairs = pairs_lib.make_plan('exhaustive', 4).pairs
  sources = raft_infer.sweep_sources(pairs)
  source_of = {tuple(p): (tuple(pairs[s]) if s >= 0 else None) for p, s in zip(pairs, sources)}
  for (i, j), source in source_of.items():
    expected = None if abs(i - j) == 1 else (i, j - 1 if j > i else j + 1)
    assert source == expected, (i, j)
  depths = raft_infer.sweep_depths(sources)
  np.testing.assert_array_equal(depths, np.abs(pairs[:, 1] - pairs[:, 0]) - 1)
  # A plan with gaps: each pair starts from the nearest planned pair of its sweep.
  sparse = np.array([[0, 1], [0, 4], [0, 2], [3, 1], [3, 0]])
  np.testing.assert_array_equal(raft_infer.sweep_sources(sparse), [-1, 2, 0, -1, 3])


def test_backend_warm_start_uses_the_previous_pair_and_resumes(weights_files, variables,
                                                               tmp_path):
  frames = _three_frames()
  pairs = pairs_lib.make_plan('exhaustive', 3).pairs
  backend = _backend(frames, weights_files, warm_start=True)
  flows, cached = preprocess_lib.compute_flows(backend, pairs, tmp_path, 'key', chunk=2)
  assert cached == 0
  # (0, 2) started from (0, 1)'s low-res flow, (2, 0) from (2, 1)'s; the rest from zero.
  run = functools.partial(raft_infer.pair_flows, backend.config, backend.variables,
                          backend.features(), iters=ITERS, chunk=2)
  start, low01 = run([[0, 1]])
  up02, _ = run([[0, 2]], flow_init=low01)
  rows = {tuple(p): k for k, p in enumerate(pairs)}
  np.testing.assert_allclose(flows[rows[0, 2]], backend.padding.unpad(up02[0]), atol=2e-2)
  np.testing.assert_allclose(flows[rows[0, 1]], backend.padding.unpad(start[0]), atol=2e-2)
  cold = _backend(frames, weights_files).flow(0, 2)
  assert np.abs(cold - flows[rows[0, 2]]).max() > 0.1
  # Resume: the last chunk is lost; its pairs start from low-res flows kept in the cache.
  chunks = sorted(tmp_path.glob('flows_*.npz'))
  assert len(chunks) == 3 and 'low' in np.load(chunks[0]).files
  chunks[-1].unlink()
  again = _backend(frames, weights_files, warm_start=True)
  resumed, cached = preprocess_lib.compute_flows(again, pairs, tmp_path, 'key', chunk=2)
  assert cached == 4
  np.testing.assert_array_equal(resumed, flows)


# --- converter ------------------------------------------------------------------------------------

_TV_TOP = {'feature_encoder': 'fnet', 'context_encoder': 'cnet'}
_TV_MOTION = {'convcorr1': 'convc1', 'convcorr2': 'convc2', 'convflow1': 'convf1',
              'convflow2': 'convf2', 'conv': 'conv'}


def _official_name(key: str, small: bool) -> str:
  """A torchvision key under its official name, written from official core/extractor.py and
  core/update.py (independently of raft_convert's rules)."""
  parts = key.split('.')
  if parts[0] in _TV_TOP:
    top, rest = _TV_TOP[parts[0]], parts[1:]
    if rest[0] == 'convnormrelu':  # Stem conv1 + norm1.
      return '.'.join([top, ('conv1', 'norm1')[int(rest[1])]] + rest[2:])
    if rest[0] == 'conv':  # Output 1x1 conv.
      return '.'.join([top, 'conv2'] + rest[1:])
    layer, block, module, *leaf = rest
    if module.startswith('convnormrelu'):
      k = module[-1]
      module = f'conv{k}' if leaf[0] == '0' else f'norm{k}'
      leaf = leaf[1:]
    return '.'.join([top, layer, block, module] + leaf)
  if parts[0] == 'mask_predictor':
    index = '0' if parts[1] == 'convrelu' else '2'
    return '.'.join(['update_block', 'mask', index, parts[-1]])
  if parts[1] == 'motion_encoder':
    return '.'.join(['update_block', 'encoder', _TV_MOTION[parts[2]], parts[-1]])
  if parts[1] == 'recurrent_block':
    gate = parts[3] + ('' if small else parts[2][-1])
    return '.'.join(['update_block', 'gru', gate, parts[-1]])
  return key  # update_block.flow_head.* is named alike.


def _official_state(state: dict, small: bool) -> dict:
  """What the official release file holds: DataParallel's 'module.' prefix, and the
  BasicEncoder's strided-block norms under both norm3 and downsample.1."""
  out = {}
  for key, value in state.items():
    name = _official_name(key, small)
    out[f'module.{name}'] = value
    if '.downsample.1.' in name:
      out[f'module.{name.replace(".downsample.1.", ".norm3.")}'] = value
  return out


@pytest.mark.parametrize('kind', KINDS)
def test_official_and_torchvision_layouts_give_identical_variables(kind, states, variables):
  state = states[kind]
  small = kind == 'raft_small'
  for key in state:
    assert raft_convert.torchvision_to_official(key, small) == _official_name(key, small)
  official = _official_state(state, small)
  names = {k[len('module.'):] for k in official}
  assert ('update_block.gru.convz.weight' if small else 'update_block.gru.convz1.weight') in names
  assert 'fnet.conv1.weight' in names and 'fnet.layer1.0.conv1.weight' in names
  if not small:
    assert {'update_block.mask.0.weight', 'update_block.mask.2.bias',
            'cnet.layer2.0.norm3.running_var', 'cnet.layer2.0.downsample.1.running_var'} <= names
  converted, layout = raft_convert.convert_state_dict(official, kind)
  assert layout == 'official'
  flat, expected = weights_lib.flatten_tree(converted), weights_lib.flatten_tree(variables[kind])
  assert flat.keys() == expected.keys() == raft.variable_shapes(kind).keys()
  for name, value in flat.items():
    np.testing.assert_array_equal(value, expected[name], err_msg=name)
  assert ('batch_stats' in converted) == (not small)


def test_converter_errors_name_what_is_wrong(states):
  state = dict(states['raft'])
  with pytest.raises(UserInputError, match='raft_small weights .*--kind raft_small'):
    raft_convert.convert_state_dict(states['raft_small'], 'raft')
  with pytest.raises(UserInputError, match='--kind raft$|--kind raft\\.'):
    raft_convert.convert_state_dict(state, 'raft_small')
  del state['update_block.flow_head.conv2.bias']
  state['update_block.extra.weight'] = np.zeros(3, np.float32)
  with pytest.raises(UserInputError, match=r'missing update_block\.flow_head\.conv2\.bias; '
                                           r'unexpected update_block\.extra\.weight'):
    raft_convert.convert_state_dict(state, 'raft')
  with pytest.raises(UserInputError, match='neither the official RAFT layout'):
    raft_convert.convert_state_dict({'blocks.0.attn.qkv.weight': np.zeros(3)}, 'raft')
  wrong = _official_state(states['raft'], small=False)
  wrong['module.fnet.conv1.weight'] = np.zeros((64, 3, 5, 5), np.float32)
  with pytest.raises(UserInputError, match=r'fnet\.conv1\.weight has shape \(64, 3, 5, 5\)'):
    raft_convert.convert_state_dict(wrong, 'raft')


def test_convert_weights_command(states, tmp_path, monkeypatch, capsys):
  source = tmp_path / 'raft-small.pth'
  source.write_bytes(b'not read: the reader is replaced, as PyTorch is not installed here')
  monkeypatch.setattr(weights_lib, 'read_torch_state', lambda path: states['raft_small'])
  out = tmp_path / 'raft_small.npz'
  assert cli.main(['convert-weights', '--kind', 'raft_small', str(source), str(out)]) == 0
  assert 'torchvision layout' in capsys.readouterr().out
  variables, meta = weights_lib.load_weights(out, 'raft_small', 'data.raft_weights')
  assert meta['source'] == 'raft-small.pth' and meta['layout'] == 'torchvision'
  assert weights_lib.flatten_tree(variables).keys() == raft.variable_shapes('raft_small').keys()
  # A kind whose converter module is not there is a one-line error, not a crash.
  monkeypatch.setitem(weights_lib.CONVERTERS, 'dino_vits16',
                      ('omnimotion_jax.data.nets.no_such_converter', False, 'DINO'))
  assert cli.main(['convert-weights', '--kind', 'dino_vits16', str(source), str(out)]) == 2
  assert 'DINO conversion is not available' in capsys.readouterr().err
  monkeypatch.setattr(weights_lib, 'read_torch_state', lambda path: {'x': np.zeros(1)})
  assert cli.main(['convert-weights', '--kind', 'raft', str(source), str(out)]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and str(source) in err[0] and 'not a RAFT state dict' in err[0]


# --- backend errors and fingerprint ---------------------------------------------------------------

def test_backend_errors_name_the_file_and_the_converter(weights_files, tmp_path):
  frames = FRAMES
  with pytest.raises(UserInputError, match=r'data\.raft_weights is not set.*convert-weights'):
    flow_lib.make_backend('raft', frames)
  missing = tmp_path / 'raft-things.npz'
  with pytest.raises(UserInputError, match=rf'{re.escape(str(missing))}: weights file not found.*'
                                           r'convert-weights --kind raft '):
    flow_lib.make_backend('raft', frames, raft=flow_lib.RaftOptions(str(missing)))
  with pytest.raises(UserInputError, match="holds 'raft_small' weights but data.raft_weights "
                                           "needs 'raft'"):
    flow_lib.make_backend('raft', frames, raft=flow_lib.RaftOptions(
        str(weights_files['raft_small']), 'raft'))
  with pytest.raises(UserInputError, match='data.raft_model=.raft_tiny.'):
    flow_lib.make_backend('raft', frames, raft=flow_lib.RaftOptions(
        str(weights_files['raft_small']), 'raft_tiny'))


def test_fingerprint_has_the_weights_content_and_the_options(weights_files, tmp_path):
  base = _backend(FRAMES, weights_files)
  copy = tmp_path / 'copy.npz'
  copy.write_bytes(Path(weights_files['raft_small']).read_bytes())
  same = flow_lib.make_backend('raft', FRAMES, raft=flow_lib.RaftOptions(
      str(copy), 'raft_small', ITERS, chunk=4))
  assert same.fingerprint() == base.fingerprint()  # Content, not path; chunk changes nothing.
  for change in ({'iters': 12}, {'warm_start': True}):
    assert _backend(FRAMES, weights_files, **change).fingerprint() != base.fingerprint()
  variables, meta = weights_lib.load_weights(copy, 'raft_small', 'data.raft_weights')
  variables['params']['fnet']['conv1']['bias'] = variables['params']['fnet']['conv1']['bias'] + 1
  weights_lib.save_weights(copy, variables, 'raft_small', meta['source'], meta['layout'])
  other = flow_lib.make_backend('raft', FRAMES, raft=flow_lib.RaftOptions(
      str(copy), 'raft_small', ITERS))
  assert other.fingerprint() != base.fingerprint() and 'raft:raft_small' in base.fingerprint()


def test_preprocess_stage_with_raft_flows(weights_files, tmp_path):
  """The config fields reach the backend; the store's key follows the weights file's content."""
  frames = _three_frames()
  config = load_config('default', [
      'data.flow_backend=raft', f'data.raft_weights={weights_files["raft_small"]}',
      'data.raft_model=raft_small', f'data.raft_iters={ITERS}', 'data.raft_chunk=2',
      'data.pair_plan=exhaustive', 'data.chain=False'])  # Stored flows = direct flows.
  store = store_lib.load_store(pipeline.preprocess_stage(frames, tmp_path / 'w', config))
  assert store.meta['backend'].startswith('raft:raft_small:iters=20:warm_start=False:weights=')
  expected = _backend(frames, weights_files).flows(store.pairs)
  np.testing.assert_allclose(store.flows.astype(np.float32), expected, atol=2e-2)
  key = store.meta['preprocess_key']
  assert preprocess_lib.load_input(frames, config.data, tmp_path / 'w').key == key
  other = tmp_path / 'other.npz'  # Same path, other content: another key.
  variables, meta = weights_lib.load_weights(weights_files['raft_small'], 'raft_small', 'x')
  variables['params']['cnet']['conv2']['bias'] = variables['params']['cnet']['conv2']['bias'] + 1
  weights_lib.save_weights(other, variables, 'raft_small', meta['source'], meta['layout'])
  config.data.raft_weights = str(other)
  first = preprocess_lib.load_input(frames, config.data, tmp_path / 'w').key
  other.write_bytes(Path(weights_files['raft_small']).read_bytes())
  assert preprocess_lib.load_input(frames, config.data, tmp_path / 'w').key != first
