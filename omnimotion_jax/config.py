"""Loading `configs/*.py` ConfigDict files, with command-line overrides.

A config is a Python file with `get_config() -> ml_collections.ConfigDict`. Variants import
`configs.default` and override only what differs. `--config` takes a path or a bare name
(`cpu_tiny` -> the project's configs/cpu_tiny.py); `--set key=value` overrides single fields.
As with ml_collections' config flags, `NAME:ARG` passes ARG (a Python literal) to get_config:
`cpu_quality:4000` is the CPU setting with every step-based schedule scaled to 4k steps, where
`--set train.num_steps=4000` would change the step count alone.
"""

import ast
import functools
import hashlib
import importlib.util
import json
import os
import sys
from pathlib import Path

import ml_collections

from omnimotion_jax.errors import UserInputError

# Persistent XLA compilation cache: a second run of the same config skips compilation.
DEFAULT_CACHE_DIR = Path(os.environ.get('XDG_CACHE_HOME', Path.home() / '.cache')) / 'omnimotion_jax'


def enable_compilation_cache(cache_dir: str | os.PathLike | None = None) -> None:
  import jax  # pylint: disable=g-import-not-at-top  (so that `--help` stays fast)
  cache_dir = Path(cache_dir or os.environ.get('OMNIMOTION_JAX_CACHE', DEFAULT_CACHE_DIR / 'xla'))
  try:
    cache_dir.mkdir(parents=True, exist_ok=True)
  except OSError:
    return  # Read-only home: run without the cache.
  jax.config.update('jax_compilation_cache_dir', str(cache_dir))
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 1.0)


# The project's configs/: installed as omnimotion_jax/configs by `pip install .` (setup.py maps
# it there), or the checkout's top-level folder (source tree, editable install).
_PACKAGE = Path(__file__).resolve().parent
PROJECT_CONFIGS = next((p for p in (_PACKAGE / 'configs', _PACKAGE.parent / 'configs')
                        if (p / 'default.py').exists()), _PACKAGE.parent / 'configs')


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


def _bind_configs_package(folder: Path) -> None:
  """Makes `import configs` (and `from configs import x`) resolve to `folder`."""
  current = sys.modules.get('configs')
  if current is not None and list(getattr(current, '__path__', [])) == [str(folder)]:
    return
  for name in [n for n in sys.modules if n == 'configs' or n.startswith('configs.')]:
    del sys.modules[name]  # Another project's configs (e.g. a user's own folder).
  spec = importlib.util.spec_from_file_location('configs', folder / '__init__.py',
                                                submodule_search_locations=[str(folder)])
  module = importlib.util.module_from_spec(spec)
  sys.modules['configs'] = module
  spec.loader.exec_module(module)


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
  # Variants do `from configs import default`: bind the name `configs` to the file's own configs
  # package (or the project's), wherever it is installed, without touching sys.path.
  own = path.parent.name == 'configs' and (path.parent / '__init__.py').exists()
  _bind_configs_package(path.parent if own else PROJECT_CONFIGS)
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
  validate(config)
  config.lock()
  return config


# Ranges of numeric fields that a typo or a sign error can break silently (e.g. a negative step
# count "trains to step 0"). Fields a config lacks are skipped; None means "not set".
_POSITIVE_INT = (
    'data.stride', 'data.dense_gap', 'data.long_stride', 'data.max_frames',
    'data.max_side', 'model.num_samples', 'model.canonical.hidden', 'model.canonical.num_layers',
    'model.time_net.hidden', 'model.time_net.num_layers', 'model.time_net.latent_dim',
    'train.num_steps', 'train.sampling.num_pairs', 'train.sampling.num_points',
    'train.log_every', 'train.checkpoint_every', 'train.checkpoint_keep', 'train.remat_chunks',
    'train.steps_per_dispatch', 'train.optim.lr_decay_every', 'train.hard_mining.every',
    'train.hard_mining.stride', 'track.chunk_size', 'track.depth_stride',
    'data.raft_iters', 'data.raft_chunk', 'train.sampling.appearance_min_gap',
    'train.surface_loss.flow_robust_min_gap',
    'train.sampling.appearance_taps')
_POSITIVE = ('train.optim.lr_bijection', 'train.optim.lr_canonical', 'train.optim.lr_time_net',
             'model.max_depth', 'train.sampling.appearance_spacing')
_NON_NEGATIVE = (
    'data.cycle_threshold', 'data.direct_agreement_px', 'data.occlusion_cycle_threshold',
    'data.agreement_px_per_frame', 'train.surface_loss.w_flow', 'train.surface_loss.w_surface',
    'train.surface_loss.flow_robust_px',
    'train.surface_loss.w_layering', 'train.surface_loss.w_smooth',
    'train.surface_loss.w_depth_smooth', 'train.surface_loss.w_motion_depth',
    'model.surface.occlusion_margin', 'train.optim.lr_depth',
    'train.loss.w_flow', 'train.loss.w_smooth', 'train.loss.w_rgb_max',
    'train.loss.w_depth_range', 'train.loss.w_distortion_max', 'train.loss.w_motion_depth',
    'train.optim.grad_clip_norm', 'track.cycle_threshold', 'track.cycle_threshold_per_frame')
_FRACTION = ('train.sampling.swap_prob', 'train.sampling.hard_mining_fraction',
             'train.sampling.adjacent_mass', 'train.loss.smooth_points_fraction',
             'track.occlusion_threshold')
_CORRELATION = ('train.sampling.appearance_min_zncc',)


# Fields with a fixed set of values (the modules that use them check the same tuples:
# model.model.KINDS, data.filtering.SINGLE_WITNESS; tests/test_cli.py compares them).
CHOICES = {'model.kind': ('volume', 'surface'),
           'data.single_witness': ('none', 'direct', 'chain', 'both')}


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises UserInputError naming the first field outside its valid range or choices."""
  flat = flatten_dict(config.to_dict())
  for key, choices in CHOICES.items():
    if key in flat and flat[key] not in choices:
      raise UserInputError(f'{key}={flat[key]!r}: must be one of {choices}. Fix it in the config '
                           f'file or in --set {key}=...')
  checks = ([(k, 'a positive integer', lambda v: isinstance(v, int) and v > 0)
             for k in _POSITIVE_INT]
            + [(k, 'a number > 0', lambda v: v > 0) for k in _POSITIVE]
            + [(k, 'a number >= 0', lambda v: v >= 0) for k in _NON_NEGATIVE]
            + [(k, 'a number in [0, 1]', lambda v: 0 <= v <= 1) for k in _FRACTION]
            + [(k, 'a number in [-1, 1]', lambda v: -1 <= v <= 1) for k in _CORRELATION])
  for key, wanted, ok in checks:
    value = flat.get(key)
    if value is None or isinstance(value, bool):
      continue
    if not isinstance(value, (int, float)) or not ok(value):
      raise UserInputError(f'{key}={value!r}: must be {wanted}. Fix it in the config file or in '
                           f'--set {key}=...')


# Version 0.1 kept config.train flat; each field now lives in the section of its dataclass, under
# the same name except in hard_mining (hard_mining_start -> hard_mining.start, ...).
_RENAMED = {'hard_mining.blur_ksize': 'error_map_blur_ksize'}


# Train sections added after the flat 0.1 layout was retired.
_SECTIONS_AFTER_FLAT_LAYOUT = ('surface_loss',)


@functools.cache
def legacy_train_fields() -> dict[str, str]:
  """{0.1 name under train: today's dotted path under train}, read off configs/default.py."""
  sections = load_config('default').train.to_dict()
  out = {}
  for section, fields in sections.items():
    if section in _SECTIONS_AFTER_FLAT_LAYOUT:
      continue  # Never had flat names; its fields share names with train.loss's.
    for name in fields if isinstance(fields, dict) else ():
      path = f'{section}.{name}'
      out[_RENAMED.get(path, name if section != 'hard_mining' else f'hard_mining_{name}')] = path
  return out


# Removed in 0.2: the per-frame affine experiment (off in every config; it did not help).
RETIRED = {'model.bijection.frame_affine': False, 'train.frame_affine_init': None,
           'train.frame_affine_max_radius': None}


def _modern_key(key: str) -> str:
  """A dotted key of the flat 0.1 train layout (e.g. train.lr_bijection) in today's layout."""
  section, _, name = key.partition('.')
  if section == 'train' and name in legacy_train_fields():
    return f'train.{legacy_train_fields()[name]}'
  return key


def migrate(saved: dict, source: str = 'config.json') -> dict:
  """A saved config dict (any version) in today's layout: flat train fields moved into their
  sections, retired fields dropped. A run that used a removed feature is an error."""
  flat = {}
  for key, value in flatten_dict(saved).items():
    if key in RETIRED:
      if RETIRED[key] is not None and value != RETIRED[key]:
        raise UserInputError(f'{source}: the run used {key}={value!r}, a removed experiment; '
                             'retrain it in a new workdir without it.')
      continue
    flat[_modern_key(key)] = value
  tree = {}
  for key, value in flat.items():
    *parents, leaf = key.split('.')
    node = tree
    for part in parents:
      node = node.setdefault(part, {})
    node[leaf] = value
  return tree


def merge_over_default(saved: dict) -> ml_collections.ConfigDict:
  """A config saved by an earlier version (a workdir's config.json) merged over `default`.

  The saved dict is first brought to today's layout (`migrate`).

  Fields added since the run was saved take their `configs/default.py` value, which by this
  project's convention reproduces the behaviour from before the field existed (e.g.
  track.depth_stride=1); fields the run saved keep their values, unknown ones included.
  """
  config = load_config('default')
  with config.unlocked():
    _merge(config, migrate(saved))
  return config


def _merge(node: ml_collections.ConfigDict, saved: dict) -> None:
  for key, value in saved.items():
    if isinstance(value, dict) and isinstance(node.get(key), ml_collections.ConfigDict):
      _merge(node[key], value)
    else:
      old = node.get(key)
      if isinstance(old, tuple) and isinstance(value, list):
        value = tuple(value)  # JSON has no tuples.
      node[key] = value


def apply_override(config: ml_collections.ConfigDict, item: str) -> None:
  """Sets one field from a `dotted.key=value` string (value parsed as a Python literal)."""
  if '=' not in item:
    raise UserInputError(f'--set {item}: expected key=value, e.g. --set train.num_steps=2000.')
  key, raw = item.split('=', 1)
  key = _modern_key(key.strip())  # `--set train.lr_bijection=...` still works.
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
