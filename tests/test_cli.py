"""The console command: installed, helpful, and one-line errors for user mistakes."""

import subprocess
import sys
from pathlib import Path

import pytest

from omnimotion_jax.config import load_config
from omnimotion_jax.errors import UserInputError

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


def test_config_argument_scales_the_schedules():
  full, half = load_config('cpu_real'), load_config('cpu_real:4000')
  assert half.train.num_steps == 4000 and full.train.num_steps == 8000
  assert half.train.lr_decay_every * 2 == full.train.lr_decay_every
  assert half.data.require_agreement  # the variant's own settings stay
  with pytest.raises(UserInputError, match='cpu_real:x'):
    load_config('cpu_real:x')
  with pytest.raises(UserInputError, match='does not take that argument'):
    load_config('cpu_tiny:4000')  # get_config() without parameters
