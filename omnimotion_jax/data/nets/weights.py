"""Converted network weights on disk: one .npz that loads without PyTorch.

A weights file holds a Flax variables tree ({'params': ..., 'batch_stats': ...}) flattened to
'/'-joined keys ('params/fnet/conv1/kernel'), plus a JSON header under META_KEY:
{'format': FORMAT, 'version': VERSION, 'kind': one of KINDS, 'source': the converted file's name,
'layout': the source's key layout}. `save_weights` writes it atomically; `load_weights` checks it
and names the file and the converter command in every error. `convert_file` makes one from a
PyTorch checkpoint (`omnimotion-jax convert-weights`), the only step that needs PyTorch.
"""

import argparse
import contextlib
import hashlib
import importlib
import json
import os
from pathlib import Path

import numpy as np

from omnimotion_jax import fileio
from omnimotion_jax.errors import UserInputError

FORMAT = 'omnimotion_jax.weights'
VERSION = 1
META_KEY = '__meta__'
# Network kinds a weights file can hold, and the original releases each is converted from.
KINDS = {
    'raft': 'raft-things.pth (official RAFT) or torchvision raft_large',
    'raft_small': 'raft-small.pth (official RAFT) or torchvision raft_small',
    'dino_vits16': 'dino_deitsmall16_pretrain.pth (official DINO ViT-S/16)',
}
CONVERT_HINT = 'omnimotion-jax convert-weights --kind {kind} SOURCE.pth {path}'


def flatten_tree(tree, prefix: str = '') -> dict[str, np.ndarray]:
  """Nested dicts of arrays -> {'a/b/c': array}."""
  out = {}
  for key, value in tree.items():
    name = f'{prefix}/{key}' if prefix else str(key)
    if isinstance(value, dict):
      out.update(flatten_tree(value, name))
    else:
      out[name] = np.asarray(value)
  return out


def unflatten_tree(flat: dict[str, np.ndarray]) -> dict:
  """{'a/b/c': array} -> nested dicts of arrays."""
  tree: dict = {}
  for name, value in flat.items():
    *parents, leaf = name.split('/')
    node = tree
    for part in parents:
      node = node.setdefault(part, {})
    node[leaf] = value
  return tree


def save_weights(path: str | os.PathLike, variables: dict, kind: str, source: str,
                 layout: str) -> Path:
  """Writes a Flax variables tree as a weights file (atomically).

  Args:
    path: the .npz to write.
    variables: {'params': ..., optionally 'batch_stats': ...} of numpy/JAX float arrays.
    kind: a KINDS key.
    source: name of the file it was converted from (recorded, not read).
    layout: the source's key layout (e.g. 'official', 'torchvision').
  """
  if kind not in KINDS:
    raise ValueError(f'kind={kind!r}: expected one of {tuple(KINDS)}')
  flat = {k: np.asarray(v, np.float32) for k, v in flatten_tree(variables).items()}
  meta = {'format': FORMAT, 'version': VERSION, 'kind': kind, 'source': str(source),
          'layout': layout}
  flat[META_KEY] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
  return fileio.write_npz_atomic(path, flat)


def content_digest(path: str | os.PathLike) -> str:
  """A weights file's identity for cache keys: the first 16 hex digits of its bytes' sha256."""
  with open(path, 'rb') as file:
    return hashlib.file_digest(file, 'sha256').hexdigest()[:16]


def load_weights(path: str | os.PathLike | None, kind: str, option: str) -> tuple[dict, dict]:
  """Reads a weights file written by `save_weights` and checks that it holds `kind`.

  Args:
    path: the .npz (None: not configured).
    kind: the KINDS key the caller needs.
    option: the config field that names the file (for the error messages), e.g.
      'data.raft_weights'.

  Returns:
    (variables, meta): the nested variables tree of float32 numpy arrays, and the header dict.
  """
  hint = (f'convert {KINDS[kind]} with `{CONVERT_HINT.format(kind=kind, path=path or "OUT.npz")}`'
          f' and pass it as {option}=OUT.npz')
  if not path:
    raise UserInputError(f'{option} is not set: {kind} needs converted weights; {hint}.')
  path = Path(path)
  if not path.is_file():
    raise UserInputError(f'{path}: weights file not found ({option}); {hint}.')
  try:
    with np.load(path, allow_pickle=False) as data:
      flat = {k: data[k] for k in data.files}
  except Exception as error:  # A .pth or any other file: not an npz.
    raise UserInputError(f'{path}: not a converted weights file ({type(error).__name__}); '
                         f'{hint}.') from None
  try:
    meta = json.loads(bytes(flat.pop(META_KEY)).decode())
    assert meta['format'] == FORMAT
  except Exception:
    raise UserInputError(f'{path}: not a weights file written by omnimotion-jax convert-weights; '
                         f'{hint}.') from None
  if meta.get('version', 0) > VERSION:
    raise UserInputError(f'{path}: weights format version {meta["version"]} is newer than this '
                         f'omnimotion_jax reads ({VERSION}); upgrade omnimotion_jax.')
  if meta.get('kind') != kind:
    raise UserInputError(f'{path}: holds {meta.get("kind")!r} weights but {option} needs {kind!r};'
                         f' {hint}.')
  return unflatten_tree(flat), meta


def check_shapes(variables: dict, expected: dict[str, tuple[int, ...]], path, kind: str,
                 option: str) -> None:
  """Raises a one-line UserInputError naming `path` unless the variables' flat keys and shapes
  are exactly `expected` ({'params/...': shape}), e.g. a network's shapes from jax.eval_shape."""
  got = {k: v.shape for k, v in flatten_tree(variables).items()}
  if got != expected:
    wrong = sorted(set(got) ^ set(expected)) + sorted(
        k for k in set(got) & set(expected) if got[k] != expected[k])
    raise UserInputError(
        f'{path}: not a complete {kind} weights file ({option}); mismatched '
        f'{", ".join(wrong[:4])}{" ..." if len(wrong) > 4 else ""}; reconvert with `'
        f'{CONVERT_HINT.format(kind=kind, path=path)}`.')


# --- conversion from PyTorch checkpoints (the only place PyTorch is used) -------------------------

# kind -> (converter module, whether its convert_state_dict takes the kind, network name). Each
# module has convert_state_dict(state: dict[str, np.ndarray][, kind]) -> (variables, layout).
CONVERTERS = {
    'raft': ('omnimotion_jax.data.nets.raft_convert', True, 'RAFT'),
    'raft_small': ('omnimotion_jax.data.nets.raft_convert', True, 'RAFT'),
    'dino_vits16': ('omnimotion_jax.data.nets.dino_convert', False, 'DINO'),
}
TORCH_HINT = 'PyTorch is needed to convert, never to run: pip install torch'


def read_torch_state(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """The tensors of a PyTorch checkpoint (.pth) as {key: float/int numpy array}, on the CPU.

  Loaded with torch.load(weights_only=True) (no pickled code runs; argparse.Namespace entries,
  as training checkpoints store their arguments, are allowed). Nested dicts are flattened with
  '.'-joined keys ({'teacher': {'cls_token': t}} -> 'teacher.cls_token'); entries that are not
  tensors are dropped. PyTorch is imported here only.
  """
  path = Path(path)
  if not path.is_file():
    raise UserInputError(f'{path}: file not found; pass the PyTorch checkpoint (.pth) to convert.')
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise UserInputError(TORCH_HINT) from None
  safe = getattr(torch.serialization, 'safe_globals', None)
  try:
    with safe([argparse.Namespace]) if safe else contextlib.nullcontext():
      obj = torch.load(path, map_location='cpu', weights_only=True)
  except Exception as error:  # pylint: disable=broad-except
    first = (str(error).strip().splitlines() or [''])[0][:160]
    raise UserInputError(f'{path}: not a PyTorch checkpoint torch.load can read safely '
                         f'({type(error).__name__}: {first}).') from None
  state = _tensors(obj, torch)
  if not state:
    raise UserInputError(f'{path}: holds no tensors; pass a state dict (.pth).')
  return state


def _tensors(obj, torch, prefix: str = '') -> dict[str, np.ndarray]:
  if torch.is_tensor(obj):
    obj = obj.detach().cpu()
    return {prefix: (obj.float() if obj.is_floating_point() else obj).numpy()}
  out = {}
  if isinstance(obj, dict):
    for key, value in obj.items():
      out.update(_tensors(value, torch, f'{prefix}.{key}' if prefix else str(key)))
  return out


def convert_file(kind: str, source: str | os.PathLike, out: str | os.PathLike) -> tuple[Path, str]:
  """Converts a PyTorch checkpoint into a weights file of `kind` (CONVERTERS).

  Returns:
    (the weights file written, the source's key layout).
  """
  if kind not in CONVERTERS:
    raise UserInputError(f'--kind {kind}: unknown; use one of {tuple(CONVERTERS)}.')
  module_name, takes_kind, label = CONVERTERS[kind]
  try:
    module = importlib.import_module(module_name)
  except ModuleNotFoundError as error:
    if error.name != module_name:
      raise
    raise UserInputError(f'--kind {kind}: {label} conversion is not available in this version '
                         f'of omnimotion_jax ({module_name} is missing).') from None
  state = read_torch_state(source)
  try:
    variables, layout = (module.convert_state_dict(state, kind) if takes_kind
                         else module.convert_state_dict(state))
  except UserInputError as error:
    raise UserInputError(f'{source}: {error}') from None
  return save_weights(out, variables, kind, Path(source).name, layout), layout
