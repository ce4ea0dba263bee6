"""PyTorch RAFT state dicts -> the Flax variables of raft.py (numpy in, numpy out; no PyTorch).

Two key layouts are read (the weights file's header records which, as 'layout'):
  * 'official': princeton-vl/RAFT's release files raft-things.pth / raft-small.pth (models.zip).
    They were saved from torch.nn.DataParallel, so every key starts with 'module.' (stripped
    here): fnet.conv1.weight, cnet.layer2.0.downsample.1.running_var,
    update_block.gru.convz1.weight, update_block.mask.0.weight. The BasicEncoder registers the
    norm of a strided block twice (norm3 and downsample.1, official core/extractor.py), so a
    batch-norm cnet has both keys; the norm3 copy is dropped.
  * 'torchvision': torchvision.models.optical_flow raft_large / raft_small state dicts
    (feature_encoder.convnormrelu.0.weight, update_block.recurrent_block.convgru1.convz.weight,
    mask_predictor.convrelu.0.weight), renamed to the official names first (TORCHVISION_RULES).

Then every Flax leaf of raft.RAFT maps to one official key (`official_key`): the module path with
an official '.k' index written '_k' (layer1.0 <-> layer1_0), kernel <-> weight
([O, I, kh, kw] -> [kh, kw, I, O]), scale <-> weight, bias <-> bias, and batch_stats mean / var
<-> running_mean / running_var. num_batches_tracked is not needed (inference statistics).
"""

import re

import numpy as np
from flax import traverse_util

from omnimotion_jax.data.nets import raft
from omnimotion_jax.errors import UserInputError

KINDS = ('raft', 'raft_small')
PREFIX = 'module.'  # torch.nn.DataParallel's.
_LEAVES = {('params', 'kernel'): 'weight', ('params', 'scale'): 'weight',
           ('params', 'bias'): 'bias', ('batch_stats', 'mean'): 'running_mean',
           ('batch_stats', 'var'): 'running_var'}
_IGNORED = ('num_batches_tracked',)
# torchvision name -> official name, applied in order (torchvision models/optical_flow/raft.py
# vs official core/extractor.py and core/update.py). The GRU rule depends on the model.
TORCHVISION_RULES = (
    (r'^feature_encoder\.', 'fnet.'),
    (r'^context_encoder\.', 'cnet.'),
    (r'^(fnet|cnet)\.convnormrelu\.0\.', r'\1.conv1.'),
    (r'^(fnet|cnet)\.convnormrelu\.1\.', r'\1.norm1.'),
    (r'^(fnet|cnet)\.conv\.', r'\1.conv2.'),
    (r'\.convnormrelu(\d)\.0\.', r'.conv\1.'),
    (r'\.convnormrelu(\d)\.1\.', r'.norm\1.'),
    (r'^update_block\.motion_encoder\.convcorr(\d)\.0\.', r'update_block.encoder.convc\1.'),
    (r'^update_block\.motion_encoder\.convflow(\d)\.0\.', r'update_block.encoder.convf\1.'),
    (r'^update_block\.motion_encoder\.conv\.0\.', 'update_block.encoder.conv.'),
    (r'^mask_predictor\.convrelu\.0\.', 'update_block.mask.0.'),
    (r'^mask_predictor\.conv\.', 'update_block.mask.2.'),
)
# The SepConvGRU's two passes are convgru1 / convgru2 in torchvision, convz1 / convz2 officially;
# the small model's single ConvGRU is convgru1 in torchvision, plain convz officially.
_GRU = r'^update_block\.recurrent_block\.convgru(\d)\.conv([zrq])\.'
_GRU_KEY = {'raft': 'update_block.gru.convz1.weight', 'raft_small': 'update_block.gru.convz.weight'}
_LIST_AT_MOST = 4  # Names listed per kind of mismatch in an error line.


def official_key(path: tuple[str, ...]) -> str:
  """The official state-dict key of a flattened Flax leaf (collection, *modules, leaf)."""
  collection, *modules, leaf = path
  modules = [re.sub(r'_(\d+)$', r'.\1', name) for name in modules]
  return '.'.join(modules + [_LEAVES[(collection, leaf)]])


def torchvision_to_official(key: str, small: bool) -> str:
  """A torchvision RAFT state-dict key under its official name."""
  for pattern, replacement in TORCHVISION_RULES:
    key = re.sub(pattern, replacement, key)
  return re.sub(_GRU, r'update_block.gru.conv\2.' if small else r'update_block.gru.conv\2\1.',
                key)


def expected_leaves(kind: str) -> dict[str, tuple[tuple[str, ...], tuple[int, ...]]]:
  """{official key: (Flax path, Flax shape)} of every variable of a model."""
  return {official_key(tuple(name.split('/'))): (tuple(name.split('/')), shape)
          for name, shape in raft.variable_shapes(kind).items()}


def detect_layout(keys) -> str | None:
  """'official', 'torchvision' or None, from the top-level module names."""
  tops = {key.split('.', 1)[0] for key in keys}
  if {'fnet', 'cnet', 'update_block'} <= tops:
    return 'official'
  if {'feature_encoder', 'context_encoder', 'update_block'} <= tops:
    return 'torchvision'
  return None


def _names(keys, label: str) -> str:
  keys = sorted(keys)
  more = f' (+{len(keys) - _LIST_AT_MOST} more)' if len(keys) > _LIST_AT_MOST else ''
  return f'{label} {", ".join(keys[:_LIST_AT_MOST])}{more}' if keys else ''


def _mismatch(expected, have) -> str:
  parts = [_names(set(expected) - set(have), 'missing'),
           _names(set(have) - set(expected), 'unexpected')]
  return '; '.join(p for p in parts if p)


def to_official(state: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], str]:
  """(state under official key names, its layout); 'module.' prefixes stripped and ignored
  entries (num_batches_tracked) dropped. Raises UserInputError for an unknown layout."""
  state = {(k[len(PREFIX):] if k.startswith(PREFIX) else k): v for k, v in state.items()}
  state = {k: v for k, v in state.items() if k.rsplit('.', 1)[-1] not in _IGNORED}
  layout = detect_layout(state)
  if layout is None:
    detail = _mismatch(expected_leaves('raft'), state)
    raise UserInputError(
        'not a RAFT state dict: its keys match neither the official RAFT layout (fnet.*, cnet.*, '
        'update_block.*) nor torchvision\'s (feature_encoder.*, context_encoder.*, '
        f'update_block.*); against raft-things.pth: {detail}.')
  if layout == 'torchvision':
    small = 'update_block.recurrent_block.convgru2.convz.weight' not in state
    state = {torchvision_to_official(k, small): v for k, v in state.items()}
  return state, layout


def convert_state_dict(state: dict[str, np.ndarray], kind: str) -> tuple[dict, str]:
  """A RAFT state dict (official or torchvision layout, numpy arrays) -> (variables, layout).

  Args:
    state: {key: array} as torch's state_dict() holds it ([O, I, kh, kw] conv weights).
    kind: 'raft' (standard model) or 'raft_small'.

  Returns:
    ({'params': ..., 'batch_stats': ... (standard model)} nested dicts of float32 numpy arrays
    for raft.RAFT(raft.MODELS[kind]), 'official' or 'torchvision').

  Raises:
    UserInputError (one line) if the keys match neither layout, hold the other model, miss or
    add variables, or have other shapes.
  """
  if kind not in KINDS:
    raise UserInputError(f'kind {kind!r}: RAFT weights are one of {KINDS}.')
  state, layout = to_official(state)
  for other, key in _GRU_KEY.items():
    if other != kind and key in state and _GRU_KEY[kind] not in state:
      raise UserInputError(f'these are {other} weights ({layout} layout, {key}), not {kind}: '
                           f'convert them with --kind {other}.')
  expected = expected_leaves(kind)
  for key in [k for k in state if k not in expected]:  # BasicEncoder's second name of a norm.
    twin = re.sub(r'\.norm[34]\.(\w+)$', r'.downsample.1.\1', key)
    if twin != key and twin in state:
      del state[key]
  detail = _mismatch(expected, state)
  if detail:
    raise UserInputError(f'{kind} weights ({layout} layout) do not match the model: {detail}.')
  flat = {}
  for key, (path, shape) in expected.items():
    value = np.asarray(state[key], np.float32)
    if path[-1] == 'kernel':
      value = value.transpose(2, 3, 1, 0)
    if value.shape != shape:
      raise UserInputError(f'{key} has shape {tuple(state[key].shape)} ({layout} layout); '
                           f'{kind} needs {shape} in Flax order; are these {kind} weights?')
    flat[path] = value
  return traverse_util.unflatten_dict(flat), layout
