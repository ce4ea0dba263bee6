"""The console command: installed, helpful, and one-line errors for user mistakes."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from omnimotion_jax import progress
from omnimotion_jax import config as config_lib
from omnimotion_jax.config import load_config, merge_over_default
from omnimotion_jax.data import filtering
from omnimotion_jax.errors import UserInputError
from omnimotion_jax.model import model as model_lib

CLI = Path(sys.executable).parent / 'omnimotion-jax'


def _run(*args):
  return subprocess.run([str(CLI), *args], capture_output=True, text=True, timeout=300)


def test_help_works_from_the_venv():
  result = _run('--help')
  assert result.returncode == 0
  assert 'usage: omnimotion-jax' in result.stdout
  assert 'config' in result.stdout


def test_unknown_config_is_a_one_line_error():
  result = _run('config', '--config', 'no_such_config')
  assert result.returncode == 2
  assert 'Traceback' not in result.stderr
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and 'no_such_config' in lines[0] and 'Known names' in lines[0]


def test_bad_override_names_the_field():
  result = _run('config', '--config', 'cpu_tiny', '--set', 'train.no_such_field=3')
  assert result.returncode == 2
  assert 'train.no_such_field' in result.stderr and 'Traceback' not in result.stderr


def test_a_config_saved_in_the_flat_0_1_layout_is_migrated():
  legacy = {'seed': 1, 'model': {'bijection': {'frame_affine': False}},
            'train': {'lr_bijection': 5e-4, 'hard_mining_start': 40, 'num_steps': 10,
                      'frame_affine_init': 'flow'}}
  config = merge_over_default(legacy)
  assert config.train.optim.lr_bijection == 5e-4 and config.train.hard_mining.start == 40
  assert config.train.num_steps == 10 and config.seed == 1
  assert 'frame_affine' not in config.model.bijection and 'frame_affine_init' not in config.train
  with pytest.raises(UserInputError, match=r'model\.bijection\.frame_affine=True'):
    merge_over_default({'model': {'bijection': {'frame_affine': True}}})


def test_config_argument_scales_the_schedules():
  full = load_config('cpu_real')
  half = load_config(f'cpu_real:{full.train.num_steps // 2}')
  assert 2 * half.train.num_steps == full.train.num_steps
  assert half.train.optim.lr_decay_every * 2 == full.train.optim.lr_decay_every
  assert 2 * half.train.surface_loss.motion_depth_steps == full.train.surface_loss.motion_depth_steps
  assert half.model.kind == 'surface' and half.data.single_witness == 'both'  # its own settings stay
  with pytest.raises(UserInputError, match='cpu_real:x'):
    load_config('cpu_real:x')
  with pytest.raises(UserInputError, match='does not take that argument'):
    load_config('cpu_tiny:4000')  # get_config() without parameters


@pytest.mark.parametrize('override, field', [
    ('train.num_steps=-5', 'train.num_steps'),
    ('train.sampling.num_points=0', 'train.sampling.num_points'),
    ('train.optim.lr_canonical=-1e-3', 'train.optim.lr_canonical'),
    ('train.swap_prob=1.5', 'train.sampling.swap_prob'),  # A 0.1 (flat) name: still accepted.
    ('track.cycle_threshold=-3', 'track.cycle_threshold'),
    ('train.sampling.appearance_min_zncc=1.5', 'train.sampling.appearance_min_zncc')])
def test_out_of_range_field_is_a_one_line_error(override, field):
  with pytest.raises(UserInputError, match=f'^{field}=.*must be'):
    load_config('cpu_tiny', [override])
  for name in ('default', 'paper', 'cpu_quality', 'cpu_real', 'cpu_real_volume', 'cpu_demo',
               'cpu_tiny'):
    load_config(name)  # The shipped configs are all in range.


def test_non_finite_queries_are_named_as_such(tmp_path):
  from omnimotion_jax import pipeline
  path = tmp_path / 'q.npy'
  np.save(path, np.array([[0, 1, 2], [0, np.nan, 3], [1, 2, np.inf]], np.float32))
  with pytest.raises(UserInputError, match='2 of 3 query rows hold NaN or inf.*row 1'):
    pipeline.load_queries(path)
  np.save(path, np.zeros((3, 2), np.float32))
  with pytest.raises(UserInputError, match=r'shape \[N, 3\].*\(3, 2\)'):
    pipeline.load_queries(path)


def test_a_workdir_saved_before_a_field_existed_still_loads(tmp_path):
  import argparse
  import json
  from omnimotion_jax import cli
  saved = load_config('cpu_tiny').to_dict()
  del saved['track']['depth_stride']  # As written by a version without the field.
  saved['model']['num_samples'] = 5   # The run's own values win.
  (tmp_path / 'config.json').write_text(json.dumps(saved))
  args = argparse.Namespace(workdir=str(tmp_path), config=None,
                            overrides=['track.depth_stride=2'])
  config = cli._saved_or_given_config(args)  # pylint: disable=protected-access
  assert config.track.depth_stride == 2 and config.model.num_samples == 5
  assert config.train.num_steps == load_config('cpu_tiny').train.num_steps
  args.overrides = ['track.depth_stride=0']
  with pytest.raises(UserInputError, match='track.depth_stride=0'):
    cli._saved_or_given_config(args)  # pylint: disable=protected-access


def test_configs_resolve_after_a_non_editable_install(tmp_path):
  # `pip install .` (not -e) ships configs/ as omnimotion_jax/configs; variants still find
  # `configs.default`, from any working directory.
  root = Path(__file__).resolve().parent.parent
  target = tmp_path / 'site'
  subprocess.run([sys.executable, '-m', 'pip', 'install', '--quiet', '--no-deps',
                  '--no-build-isolation', '--target', str(target), str(root)],
                 check=True, capture_output=True, timeout=300, cwd=tmp_path)
  code = ('import omnimotion_jax.config as c; '
          'print(c.PROJECT_CONFIGS, c.load_config("cpu_real:2000").train.num_steps)')
  result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          cwd=tmp_path, env={**os.environ, 'PYTHONPATH': str(target)},
                          timeout=120)
  assert result.returncode == 0, result.stderr
  folder, steps = result.stdout.split()
  assert Path(folder) == target / 'omnimotion_jax' / 'configs' and steps == '2000'


def test_quiet_hides_bars_and_restores_the_level():
  assert not progress.bar(range(2)).disable
  with progress.quiet():
    assert progress.bar(range(2)).disable and not progress.enabled()
  assert progress.enabled()


def test_cpu_devices_and_several_workdirs_give_one_line_errors(tmp_path):
  from omnimotion_jax import cli
  import jax
  jax.devices()  # JAX has started in this process: forcing devices can no longer work.
  assert cli.main(['--cpu_devices', '2', 'config', '--config', 'cpu_tiny']) == 2
  result = _run('--cpu_devices', '0', 'config', '--config', 'cpu_tiny')
  assert result.returncode == 2 and '>= 1' in result.stderr and 'Traceback' not in result.stderr
  result = _run('run', 'a.mp4', 'b.mp4', '--workdir', str(tmp_path / 'w'))
  assert result.returncode == 2 and '2 videos but 1 --workdir' in result.stderr
  result = _run('train', '--workdir', str(tmp_path / 'w'), str(tmp_path / 'w'), '--config',
                'cpu_tiny')
  assert result.returncode == 2 and 'different folder' in result.stderr
  result = _run('train', '--workdir', str(tmp_path / 'a'), str(tmp_path / 'b'), '--config',
                'cpu_tiny', '--data_parallel')
  assert result.returncode == 2 and 'one video' in result.stderr


def test_config_choices_are_the_ones_the_modules_accept():
  # config.py validates without importing the modules; the tuples must stay the same.
  assert config_lib.CHOICES['model.kind'] == model_lib.KINDS
  assert config_lib.CHOICES['data.single_witness'] == filtering.SINGLE_WITNESS
  with pytest.raises(UserInputError, match=r"^data\.single_witness='all': must be one of"):
    load_config('cpu_real', ['data.single_witness=all'])
