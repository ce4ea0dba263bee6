"""PyTorch DINO ViT-S/16 state dicts -> DinoViT variables (dino.py), on numpy arrays only.

Accepted layouts (the tensors are the same; only the key names differ):
  'official': the DINO release dino_deitsmall16_pretrain.pth, the teacher backbone's plain state
    dict: cls_token, pos_embed [1, 197, 384], patch_embed.proj.{weight,bias},
    blocks.{i}.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}.{weight,bias}, norm.{weight,bias}.
    timm's vit_small_patch16_224 built with num_classes=0 has exactly these keys too.
  'dino_checkpoint': a DINO training checkpoint (main_dino.py's checkpoint.pth): a dict with
    'teacher' and 'student' state dicts whose keys carry 'module.' and 'backbone.' prefixes and
    the projection head's 'head.' entries. The teacher is used, as the reference's
    utils.load_pretrained_weights does by default (checkpoint_key 'teacher'); the head is dropped.
  'timm': timm's vit_small_patch16_224 state dict: the official keys plus the classifier
    head.{weight,bias} (dropped).

PyTorch -> Flax: Linear weights [out, in] are transposed to Dense kernels [in, out], the patch
convolution [out, in, kh, kw] to a Conv kernel [kh, kw, in, out], LayerNorm weight -> scale.
"""

import numpy as np

from omnimotion_jax.data.nets import dino
from omnimotion_jax.data.nets import weights as weights_lib
from omnimotion_jax.errors import UserInputError

OFFICIAL, CHECKPOINT, TIMM = 'official', 'dino_checkpoint', 'timm'
# Prefixes of a training checkpoint's keys (DDP's 'module.', MultiCropWrapper's 'backbone.'),
# stripped as DINO's utils.load_pretrained_weights strips them.
CHECKPOINT_PREFIXES = ('module.', 'backbone.')
HEAD_PREFIX = 'head.'  # DINOHead (training checkpoints) or timm's classifier.
BLOCK_PARTS = ('norm1', 'attn.qkv', 'attn.proj', 'norm2', 'mlp.fc1', 'mlp.fc2')
_LISTED = 4  # Names quoted in an error message.


def official_keys(depth: int = dino.DEPTH) -> list[str]:
  """The keys of DINO's ViT backbone state dict (the 'official' layout), in model order."""
  keys = ['cls_token', 'pos_embed', 'patch_embed.proj.weight', 'patch_embed.proj.bias']
  for i in range(depth):
    keys += [f'blocks.{i}.{part}.{leaf}' for part in BLOCK_PARTS for leaf in ('weight', 'bias')]
  return keys + ['norm.weight', 'norm.bias']


def convert_state_dict(state: dict) -> tuple[dict, str]:
  """A DINO ViT-S/16 state dict of numpy arrays -> (DinoViT variables, layout name).

  Args:
    state: {key: array} in one of the module docstring's layouts; for a training checkpoint the
      whole checkpoint dict ({'teacher': {...}, 'student': {...}, 'epoch': ..., ...}) or its
      'teacher' entries flattened as 'teacher.<key>' or 'teacher/<key>'.

  Returns:
    ({'params': nested float32 numpy arrays}, 'official' | 'dino_checkpoint' | 'timm').

  Raises:
    UserInputError (one line) if the keys match no layout or a shape is not ViT-S/16's.
  """
  backbone, layout = _backbone(state)
  expected = official_keys()
  missing = [k for k in expected if k not in backbone]
  unexpected = sorted(set(backbone) - set(expected))
  if missing or unexpected:
    raise UserInputError(
        f'state dict is not a DINO ViT-S/16 backbone (official dino_deitsmall16_pretrain.pth, a '
        f'DINO training checkpoint or timm vit_small_patch16_224): {_listing("missing", missing)}'
        f'{"; " if missing and unexpected else ""}{_listing("unexpected", unexpected)}.')
  params = {}
  for key in expected:
    path, value = _flax_entry(key, np.asarray(backbone[key], np.float32))
    node = params
    for part in path[:-1]:
      node = node.setdefault(part, {})
    node[path[-1]] = value
  variables = {'params': params}
  _check_shapes(variables)
  return variables, layout


def _backbone(state: dict) -> tuple[dict, str]:
  """The backbone's {official key: array} of a state dict, and its layout name."""
  for name in ('teacher', 'student'):
    if isinstance(state.get(name), dict):
      return _strip(state[name]), CHECKPOINT
  for name in ('teacher', 'student'):
    nested = {k[len(name) + 1:]: v for k, v in state.items()
              if k[:len(name) + 1] in (f'{name}.', f'{name}/')}
    if nested:
      return _strip(nested), CHECKPOINT
  if any(k.startswith(CHECKPOINT_PREFIXES) for k in state):
    return _strip(state), CHECKPOINT
  if any(k.startswith(HEAD_PREFIX) for k in state):
    return _drop_head(state), TIMM
  return dict(state), OFFICIAL


def _strip(state: dict) -> dict:
  """Keys without 'module.' / 'backbone.' (anywhere in front), the head dropped."""
  out = {}
  for key, value in state.items():
    for prefix in CHECKPOINT_PREFIXES:
      if key.startswith(prefix):
        key = key[len(prefix):]
    out[key] = value
  return _drop_head(out)


def _drop_head(state: dict) -> dict:
  return {k: v for k, v in state.items() if not k.startswith(HEAD_PREFIX)}


def _flax_entry(key: str, value: np.ndarray) -> tuple[list[str], np.ndarray]:
  """An official key and its PyTorch array -> (path in 'params', Flax array)."""
  parts = key.split('.')
  if parts[0] == 'blocks':
    parts = [f'blocks_{parts[1]}'] + parts[2:]
  if parts[0] == 'patch_embed':
    parts = ['patch_embed'] + parts[2:]  # patch_embed.proj -> one Conv named patch_embed.
  leaf = parts[-1]
  if leaf == 'weight':
    if value.ndim == 1:  # LayerNorm.
      return parts[:-1] + ['scale'], value
    if value.ndim == 2:  # Linear [out, in] -> Dense [in, out].
      return parts[:-1] + ['kernel'], value.T.copy()
    return parts[:-1] + ['kernel'], value.transpose(2, 3, 1, 0).copy()  # Conv2d -> HWIO.
  return parts, value


def _check_shapes(variables: dict) -> None:
  got = {k: v.shape for k, v in weights_lib.flatten_tree(variables).items()}
  want = dino.variable_shapes(dino.DEPTH)
  wrong = [f'{k} {got[k]} (ViT-S/16: {want[k]})' for k in want if got.get(k) != want[k]]
  if wrong:
    raise UserInputError(f'state dict has DINO ViT keys but not ViT-S/16 shapes (only ViT-S/16 is '
                         f'supported): {", ".join(wrong[:_LISTED])}'
                         f'{" ..." if len(wrong) > _LISTED else ""}.')


def _listing(what: str, keys: list[str]) -> str:
  if not keys:
    return ''
  more = f' and {len(keys) - _LISTED} more' if len(keys) > _LISTED else ''
  return f'{what} {", ".join(repr(k) for k in keys[:_LISTED])}{more}'
