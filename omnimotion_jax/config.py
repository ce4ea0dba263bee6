"""Loading `configs/*.py` ConfigDict files, with command-line overrides.

A config is a Python file with `get_config() -> ml_collections.ConfigDict`. Variants import
`configs.default` and override only what differs. `--config` takes a path or a bare name
(`cpu_tiny` -> the project's configs/cpu_tiny.py); `--set key=value` overrides single fields.
As with ml_collections' config flags, `NAME:ARG` passes ARG (a Python literal) to get_config:
`cpu_quality:4000` is the CPU setting with every step-based schedule scaled to 4k steps, where
`--set train.num_steps=4000` would change the step count alone.
"""

import ast
import hashlib
import importlib.util
import json
import sys
from pathlib import Path

import ml_collections

from omnimotion_jax.errors import UserInputError

# The project's own configs/ folder (present in a source checkout or an editable install).
PROJECT_CONFIGS = Path(__file__).resolve().parent.parent / 'configs'


def resolve_config_path(name_or_path: str) -> Path:
  path = Path(name_or_path)
  if path.suffix == '.py' or path.exists():
    if not path.exists():
      raise UserInputError(f'{path}: config file not found. Pass a path to a configs/*.py file or a '
                           f'name from {PROJECT_CONFIGS} (e.g. cpu_tiny).')
    return path
  candidate = PROJECT_CONFIGS / f'{name_or_path}.py'
  if not candidate.exists():
    known = sorted(p.stem for p in PROJECT_CONFIGS.glob('*.py') if not p.stem.startswith('_'))
    raise UserInputError(f'--config {name_or_path}: no such config. Known names: {", ".join(known)}; '
                         'or pass a path to a .py file with get_config().')
  return candidate


def load_config(name_or_path: str = 'default', overrides: list[str] | None = None
                ) -> ml_collections.ConfigDict:
  """Loads a config file (`NAME` or `NAME:ARG`), applies `key=value` overrides, and locks it."""
  name_or_path, has_arg, raw_arg = str(name_or_path).partition(':')
  args = ()
  if has_arg:
    try:
      args = (ast.literal_eval(raw_arg),)
    except (ValueError, SyntaxError):
      raise UserInputError(f'--config {name_or_path}:{raw_arg}: the part after ":" must be a Python '
                           'literal passed to get_config, e.g. cpu_quality:4000.') from None
  path = resolve_config_path(name_or_path).resolve()
  # Variants do `from configs import default`; make `configs` importable from the file's project.
  root = str(path.parent.parent if path.parent.name == 'configs' else PROJECT_CONFIGS.parent)
  if root not in sys.path:
    sys.path.insert(0, root)
  spec = importlib.util.spec_from_file_location(f'_omnimotion_config_{path.stem}', path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except SyntaxError as e:
    raise UserInputError(f'{path}: not a valid Python config file ({e.msg}, line {e.lineno}).') from e
  if not hasattr(module, 'get_config'):
    raise UserInputError(f'{path}: a config file must define get_config() returning a ConfigDict.')
  try:
    config = module.get_config(*args)
  except TypeError as e:
    if not args:
      raise
    raise UserInputError(f'--config {name_or_path}:{raw_arg}: {path.name}\'s get_config does not '
                         f'take that argument ({e}).') from None
  for item in overrides or []:
    apply_override(config, item)
  config.lock()
  return config


def apply_override(config: ml_collections.ConfigDict, item: str) -> None:
  """Sets one field from a `dotted.key=value` string (value parsed as a Python literal)."""
  if '=' not in item:
    raise UserInputError(f'--set {item}: expected key=value, e.g. --set train.num_steps=2000.')
  key, raw = item.split('=', 1)
  try:
    value = ast.literal_eval(raw)
  except (ValueError, SyntaxError):
    value = raw  # A bare string such as --set data.flow_backend=files.
  node = config
  parts = key.strip().split('.')
  for part in parts[:-1]:
    if part not in node:
      raise UserInputError(f'--set {item}: config has no section "{part}".')
    node = node[part]
  if parts[-1] not in node:
    raise UserInputError(f'--set {item}: config has no field "{key}". See configs/default.py.')
  old = node[parts[-1]]
  if isinstance(old, tuple) and isinstance(value, list):
    value = tuple(value)
  if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
    value = float(value)  # `--set train.lr_bijection=1` means 1.0.
  try:
    node[parts[-1]] = value
  except TypeError as e:
    raise UserInputError(f'--set {item}: wrong type for {key} ({e}).') from e


def flatten_dict(tree, prefix: str = '') -> dict[str, object]:
  """Nested dicts -> {'dotted.key': leaf}, in insertion order (the keys `--set` takes)."""
  if not isinstance(tree, dict):
    return {prefix: tree}
  out = {}
  for key, value in tree.items():
    out.update(flatten_dict(value, f'{prefix}.{key}' if prefix else str(key)))
  return out


def config_hash(config: ml_collections.ConfigDict) -> str:
  """Short stable hash of a config's resolved values (for result files and caches)."""
  blob = json.dumps(config.to_dict(), sort_keys=True, default=str)
  return hashlib.sha256(blob.encode()).hexdigest()[:12]
