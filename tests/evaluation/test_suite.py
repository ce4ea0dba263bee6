"""The `eval` command: per-video results, resuming, sharding and the summary, on tapvid_synthetic.

Runs use the 'mini_256x256' config of tapvid_synthetic (generated on the spot, no manual files;
prepared once per module into a tmp TFDS data dir) and configs/cpu_tiny with 10 training steps.
The OmniMotion run compiles the train and tracking steps: ~15 s with the XLA cache in .cache/xla
warm, up to ~55 s on a cold cache on a busy 2-core CPU; everything else takes a few seconds.
"""

import json
import os
import logging

import pytest

from omnimotion_jax import cli
from omnimotion_jax.config import load_config
from omnimotion_jax.errors import UserInputError
from omnimotion_jax.evaluation import suite as evaluator
from omnimotion_jax.evaluation import summary as summary_lib

DATASET = 'tapvid_synthetic'
RESOLUTION = 'mini_256x256'
FIRST_VIDEO = 'mini-pan-one-object'  # Position 0 of the synthetic-mini suite.
SECOND_VIDEO = 'mini-exit-reenter'   # Position 1.
OVERRIDES = ['train.num_steps=10']


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  """A TFDS data dir shared by the module's runs (the set is prepared on first use)."""
  return tmp_path_factory.mktemp('tfds')


@pytest.fixture(scope='module')
def config():
  return load_config('cpu_tiny', OVERRIDES)


def _run(config, data_dir, out, **kwargs):
  return evaluator.run_evaluation(DATASET, 'strided', config, None, out, data_dir=data_dir,
                                  resolution=RESOLUTION, **kwargs)


def test_baseline_run_writes_results_and_resumes(config, data_dir, tmp_path, caplog):
  summary = _run(config, data_dir, tmp_path, videos='0', baseline='chained')
  result_path = tmp_path / 'videos' / FIRST_VIDEO / 'result.json'
  result = json.loads(result_path.read_text())
  assert result['video_id'] == FIRST_VIDEO and result['query_mode'] == 'strided'
  assert result['config_hash'] == summary['config_hash'] and result['size'] == [256, 256]
  assert set(result['metrics']) == {'chained'}
  assert {'preprocess', 'track_chained', 'total'} <= set(result['wall_s'])
  assert 0.0 <= result['metrics']['chained']['average_jaccard'] <= 1.0
  assert not (tmp_path / 'videos' / FIRST_VIDEO / 'input').exists()  # Frames go in as an array.
  markdown = (tmp_path / 'summary.md').read_text()
  assert 'videos included: 1' in markdown and 'all selected videos are done' in markdown
  assert 'ours: chained flow' in markdown
  assert json.loads((tmp_path / 'summary.json').read_text())['progress']['all_done']

  # Second run: the finished video is skipped (file untouched, logged).
  mtime = result_path.stat().st_mtime_ns
  with caplog.at_level(logging.INFO, logger='omnimotion_jax'):
    summary = _run(config, data_dir, tmp_path, videos='0', baseline='chained')
  assert summary['skipped'] == [FIRST_VIDEO] and summary['evaluated'] == []
  assert any('skipped' in r.getMessage() for r in caplog.records)
  assert result_path.stat().st_mtime_ns == mtime

  # Another baseline adds its scores to the same result; ids work as well as positions.
  summary = _run(config, data_dir, tmp_path, videos=FIRST_VIDEO, baseline='direct')
  assert summary['evaluated'] == [FIRST_VIDEO]
  assert set(json.loads(result_path.read_text())['metrics']) == {'chained', 'direct'}


def test_shard_selects_every_nth_video_and_summary_says_what_is_missing(config, data_dir,
                                                                        tmp_path):
  summary = _run(config, data_dir, tmp_path, videos='0,1', shard='1/2', baseline='chained')
  assert summary['evaluated'] == [SECOND_VIDEO]
  assert not (tmp_path / 'videos' / FIRST_VIDEO).exists()
  assert summary['progress'] == {'selected': 2, 'done': 1, 'missing': 1,
                                 'missing_ids': [FIRST_VIDEO], 'all_done': False}
  assert 'NOT all done' in (tmp_path / 'summary.md').read_text()


@pytest.mark.parametrize('text', ['2/2', '1', 'a/b', '-1/3', '0/0', '1/2/3', ''])
def test_bad_shard_is_a_user_error(text):
  with pytest.raises(UserInputError, match='--shard'):
    evaluator.parse_shard(text)


def test_shard_parsing():
  assert evaluator.parse_shard('0/1') == (0, 1)
  assert evaluator.parse_shard(' 3 / 4 ') == (3, 4)
  assert evaluator.parse_shard(None) is None


def test_cli_reports_bad_shard_in_one_line(capsys, monkeypatch, tmp_path):
  monkeypatch.setattr(cli, 'enable_compilation_cache', lambda *a: None)  # Keep the test's cache.
  code = cli.main(['eval', '--dataset', DATASET, '--config', 'cpu_tiny', '--out', str(tmp_path),
                   '--shard', '5/2'])
  err = capsys.readouterr().err.strip().splitlines()
  assert code == 2 and len(err) == 1 and '--shard 5/2' in err[0]


def test_bad_video_and_resolution_are_user_errors(config, data_dir, tmp_path):
  with pytest.raises(UserInputError, match='--videos no-such-video'):
    _run(config, data_dir, tmp_path, videos='no-such-video', baseline='chained')
  with pytest.raises(UserInputError, match='--resolution'):
    evaluator.run_evaluation(DATASET, 'strided', config, None, tmp_path, data_dir=data_dir,
                             resolution='128x128')


def test_summary_shows_the_papers_table_1():
  summary = {'dataset': 'tapvid_davis', 'resolution': '256x256', 'query_mode': 'strided',
             'config_hash': 'h', 'config': 'paper', 'flow_backend': 'dis', 'num_included': 0,
             'progress': {'selected': 30, 'done': 0, 'missing': 30, 'all_done': False},
             'means': {}, 'published': {'x': {}}, 'videos': {}}
  lines = summary_lib.format_summary(summary).splitlines()
  published = [line for line in lines if line.startswith('| published:')]
  assert len(published) == 9  # Every row of Table 1, none invented, none left empty.
  assert not any(' - | - |' in line or '*' in line for line in published)
  row = next(line for line in published if 'OmniMotion (RAFT input)' in line)
  assert '| 51.7 | 67.5 | 85.3 | 0.74 |' in row  # DAVIS column.
  raft_c = next(line for line in published if 'RAFT-C' in line)
  assert '| 30.7 | 46.6 | 80.2 | 0.93 |' in raft_c


def test_omnimotion_run_scores_all_three_trackers(config, data_dir, tmp_path, monkeypatch):
  """Through the CLI: preprocess + 10 train steps + tracking (see the module docstring for time)."""
  monkeypatch.setattr(cli, 'enable_compilation_cache', lambda *a: None)  # Keep the test's cache.
  code = cli.main(['eval', '--dataset', DATASET, '--resolution', RESOLUTION, '--videos', '0',
                   '--config', 'cpu_tiny', '--set', OVERRIDES[0], '--data_dir', str(data_dir),
                   '--out', str(tmp_path), '--no_progress'])
  assert code == 0
  result = json.loads((tmp_path / 'videos' / FIRST_VIDEO / 'result.json').read_text())
  assert set(result['metrics']) == set(evaluator.TRACKERS)
  assert {'train', 'track_omnimotion'} <= set(result['wall_s'])
  summary = json.loads((tmp_path / 'summary.json').read_text())
  assert set(summary['means']) == set(evaluator.TRACKERS)
  markdown = (tmp_path / 'summary.md').read_text()
  for label in ('ours: OmniMotion', 'ours: chained flow', 'ours: direct flow'):
    assert label in markdown

  # New occlusion thresholds: a new result (new config hash), but the same trained model.
  run_files = (tmp_path / 'videos' / FIRST_VIDEO).glob
  checkpoints = sorted(p.name for p in run_files('run_*/checkpoints/*'))
  code = cli.main(['eval', '--dataset', DATASET, '--resolution', RESOLUTION, '--videos', '0',
                   '--config', 'cpu_tiny', '--set', OVERRIDES[0], '--set',
                   'track.cycle_threshold=1e-3', '--data_dir', str(data_dir), '--out',
                   str(tmp_path), '--no_progress'])
  assert code == 0
  again = json.loads((tmp_path / 'videos' / FIRST_VIDEO / 'result.json').read_text())
  assert again['config_hash'] != result['config_hash']
  assert again['workdir'] == result['workdir']
  assert sorted(p.name for p in run_files('run_*/checkpoints/*')) == checkpoints
  assert again['metrics']['omnimotion']['occlusion_accuracy'] != (
      result['metrics']['omnimotion']['occlusion_accuracy'])  # Cycle check now occludes ~all.


def test_batched_evaluation_matches_one_video_at_a_time(config, data_dir, tmp_path):
  """--batch_videos 2: the two videos train as one program; the results match one at a time."""
  single = _run(config, data_dir, tmp_path / 'single', videos='0,1')
  batched = _run(config, data_dir, tmp_path / 'batched', videos='0,1', batch_videos=2)
  assert batched['evaluated'] == single['evaluated'] == [FIRST_VIDEO, SECOND_VIDEO]
  for video in (FIRST_VIDEO, SECOND_VIDEO):
    a, b = (json.loads((tmp_path / out / 'videos' / video / 'result.json').read_text())
            for out in ('single', 'batched'))
    for tracker in evaluator.TRACKERS:
      for metric, value in a['metrics'][tracker].items():
        assert abs(b['metrics'][tracker][metric] - value) < 1e-3, (video, tracker, metric)
    train = json.loads((tmp_path / 'batched' / 'videos' / video / b['workdir']
                        / 'train.json').read_text())
    assert train['batch_videos'] == 2 and {'preprocess', 'train'} <= set(b['wall_s'])
  with pytest.raises(UserInputError, match='either --batch_videos or --workers'):
    _run(config, data_dir, tmp_path / 'both', batch_videos=2, workers=2)


def test_a_two_process_distributed_job_splits_the_set_by_process(data_dir, tmp_path):
  """`eval --distributed` in two local processes (jax.distributed with a coordinator): each
  evaluates its process_index shard, and the last one to finish writes the whole summary."""
  import socket
  import subprocess
  import sys
  _run(load_config('cpu_tiny'), data_dir, tmp_path / 'prepare', baseline='chained',
       videos='0')  # Prepares the set once: TFDS preparation must not run concurrently.
  with socket.socket() as s:
    s.bind(('localhost', 0))
    port = s.getsockname()[1]
  command = [sys.executable, '-m', 'omnimotion_jax.cli', 'eval', '--dataset', DATASET,
             '--resolution', RESOLUTION, '--config', 'cpu_tiny', '--baseline', 'chained',
             '--data_dir', str(data_dir), '--out', str(tmp_path / 'out'), '--distributed',
             '--coordinator', f'localhost:{port}', '--num_processes', '2']
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu'}
  procs = [subprocess.Popen(command + ['--process_id', str(i)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(2)]
  outputs = [p.communicate(timeout=600) for p in procs]
  assert [p.returncode for p in procs] == [0, 0], outputs
  for i, (_, log) in enumerate(outputs):
    assert f'2 of 4 selected videos in shard {i}/2' in log, log[-2000:]
  positions = {json.loads(path.read_text())['position']
               for path in (tmp_path / 'out' / 'videos').glob('*/result.json')}
  assert positions == {0, 1, 2, 3}
