"""Batched training (train/batch.py, loop.fit_many): B videos of different lengths and sizes in
one program give each video the result of training it alone."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from omnimotion_jax import checkpoint
from omnimotion_jax import pipeline
from omnimotion_jax import workdir as workdir_lib
from omnimotion_jax.config import load_config
from omnimotion_jax.data import synthetic
from omnimotion_jax.model import model as model_lib
from omnimotion_jax.model import render
from omnimotion_jax.train import batch
from omnimotion_jax.train import loop
from omnimotion_jax.train import sampler
from omnimotion_jax.train import step as step_lib

NUM_STEPS = 3
# (frames, height, width): no video is the largest in every dimension, so each gets padded.
SHAPES = ((6, 40, 48), (5, 44, 40), (7, 36, 44))


def _config(*overrides):
  """cpu_tiny, hard mining from step 4 (every 4): in-process tests share one compiled step."""
  return load_config('cpu_tiny', ['train.steps_per_dispatch=1', 'train.hard_mining.start=4',
                                  'train.hard_mining.every=4', *overrides])


def make_workdirs(root, config):
  """Preprocessed synthetic videos of the SHAPES, one run folder each."""
  out = []
  for seed, (n, h, w) in enumerate(SHAPES, start=1):
    video = synthetic.make_video(seed, num_frames=n, height=h, width=w, num_layers=2)['video']
    out.append(pipeline.preprocess_stage(video, root / f'video{seed}', config).parent)
  return out


@pytest.fixture(scope='module')
def videos(tmp_path_factory):
  root = tmp_path_factory.mktemp('batch')
  return [sampler.train_data(workdir_lib.load_sequence(w))
          for w in make_workdirs(root, _config())]


def _steps(config, devices=None):
  tc = config.train
  args = (model_lib.model_config(config.model), *step_lib.train_configs(tc),
          tc.hard_mining.start, tc.steps_per_dispatch, tc.remat_chunks)
  return step_lib.compiled_train_steps(*args), batch.compiled_batched_steps(*args, devices)


def _run(fn, state, data, key):
  """NUM_STEPS steps -> (final state, {metric: [NUM_STEPS, ...]})."""
  metrics = []
  for _ in range(NUM_STEPS):
    state, m = fn(state, data, key)
    metrics.append(jax.device_get(m))
  return jax.device_get(state), {k: np.stack([m[k] for m in metrics]) for k in metrics[0]}


def _shape(data):
  return render.VideoShape(*data.frames.shape[:3])


# B = 1 and 3 on one device here; B = 2 and 3 on two devices below.
@pytest.mark.parametrize('num_videos', [1, 3])
def test_a_padded_batch_gives_each_video_the_result_of_training_it_alone(videos, num_videos):
  config = _config()
  (model, tx, _, single), (_, _, _, batched) = _steps(config)
  init_key, key = jax.random.split(jax.random.PRNGKey(config.seed))
  chosen = videos[:num_videos]
  alone = [_run(single, step_lib.create_train_state(model, tx, init_key, _shape(d)),
                jax.device_put(d), key) for d in chosen]
  padded = batch.padded_shape(videos)  # Larger than each video: even B = 1 is padded.
  assert all(d.frames.shape[:3] != padded[:3] for d in chosen)
  states = batch.stack([batch.pad_state(
      step_lib.create_train_state(model, tx, init_key, _shape(d)), padded) for d in chosen])
  data = batch.stack([batch.pad_data(d, padded) for d in chosen])
  together, metrics = _run(batched, states, data, batch.stack([key] * num_videos))
  for b, (state, single_metrics) in enumerate(alone):
    for name in ('loss', 'grad_norm', 'loss/flow', 'loss/rgb', 'loss/smooth'):
      np.testing.assert_allclose(metrics[name][:, b], single_metrics[name], rtol=1e-5,
                                 err_msg=name)  # From the first step on.
    video = batch.crop_state(batch.unstack(together, b), chosen[b].size)
    for x, y in zip(jax.tree_util.tree_leaves(video.params), jax.tree_util.tree_leaves(state.params)):
      np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    assert video.error_map.shape == state.error_map.shape
  if num_videos > 1:  # Different videos really train differently.
    assert not np.allclose(metrics['loss'][:, 0], metrics['loss'][:, 1])


def test_the_sampler_never_draws_padding(videos):
  small = videos[1]  # 5 frames, padded to 7 and to the widest and tallest video.
  padded = batch.pad_data(small, batch.padded_shape(videos))
  _, real_h, real_w = small.frames.shape[:3]
  cfg = sampler.SamplerConfig(**{**_config().train.sampling, 'swap_prob': 0.0})  # px_src = px.
  n, h, w = padded.frames.shape[:3]
  error_map = np.ones((n, h, w), np.float32)  # Even where the maps say "hard", padding is off.
  for seed in range(20):
    for hard in (False, True):
      b = sampler.sample_batch(jax.random.PRNGKey(seed), padded, np.int32(5000), cfg, error_map,
                               np.ones(n, np.float32), np.bool_(hard))
      src = np.asarray(b.src)
      assert (src < 5).all() and (np.asarray(b.tgt) < 5).all() and (src != b.tgt).all()
      px = np.asarray(b.px_src)
      assert (px[..., 0] < real_w).all() and (px[..., 1] < real_h).all(), (px.max(0), real_w)


def test_pad_and_crop_round_trip_and_stack_refuses_unpadded_videos(videos):
  config = _config()
  model = model_lib.OmniMotion(model_lib.model_config(config.model))
  tx = step_lib.make_optimizer(step_lib.train_configs(config.train)[2])
  state = step_lib.create_train_state(model, tx, jax.random.PRNGKey(0), _shape(videos[0]))
  state = state.replace(error_map=np.random.default_rng(0).random(state.error_map.shape))
  padded = batch.pad_state(state, batch.padded_shape(videos))
  assert padded.error_map.shape == batch.padded_shape(videos)[:3] != state.error_map.shape
  np.testing.assert_array_equal(batch.crop_state(padded, videos[0].size).error_map,
                                state.error_map)
  with pytest.raises(ValueError, match='one shape'):
    batch.stack([videos[0], videos[1]])
  assert batch.batch_slots(3, 2) == [0, 1, 2, 2] and batch.batch_slots(2, 2) == [0, 1]


def test_an_interrupted_batch_resumes_bit_identically_and_writes_each_videos_run(tmp_path):
  config = _config('train.num_steps=12', 'train.checkpoint_every=4', 'train.log_every=4')
  dirs = make_workdirs(tmp_path, config)
  datas = [sampler.train_data(workdir_lib.load_sequence(w)) for w in dirs]
  straight = loop.fit_many(config, [tmp_path / f'a{i}' for i in range(3)], datas)
  stopped = loop.fit_many(config, [tmp_path / f'b{i}' for i in range(3)], datas, stop_at=8)
  assert all(int(s.step) == 8 for s in stopped)
  resumed = loop.fit_many(config, [tmp_path / f'b{i}' for i in range(3)], datas)
  for b in range(3):
    for x, y in zip(jax.tree_util.tree_leaves(straight[b]), jax.tree_util.tree_leaves(resumed[b])):
      np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    lines = (tmp_path / f'b{b}' / workdir_lib.METRICS).read_text().splitlines()
    assert [json.loads(l)['step'] for l in lines] == [4, 8, 12]
    summary = json.loads((tmp_path / f'b{b}' / workdir_lib.TRAIN_SUMMARY).read_text())
    assert summary['batch_videos'] == 3 and summary['finished']
  # A video's checkpoint is the one training it alone writes: `fit` resumes it as finished.
  alone = loop.fit(config, tmp_path / 'b1', datas[1])
  assert int(alone.step) == 12 and alone.error_map.shape == datas[1].frames.shape[:3]
  with checkpoint.manager(tmp_path / 'b1' / workdir_lib.CHECKPOINTS) as mngr:
    assert mngr.latest_step() == 12


def test_batches_on_two_devices_match_training_each_video_alone(tmp_path):
  # Forced host devices must be set before jax starts: a fresh interpreter. B = 2 and B = 3 (an
  # odd batch on two devices: a copy of the last video fills the fourth slot) on 2 devices,
  # through fit_many, then tracked: the tracks agree with training each video alone.
  script = textwrap.dedent(f'''
      import os, sys
      os.environ['XLA_FLAGS'] = '--xla_force_host_platform_device_count=2'
      os.environ['JAX_PLATFORMS'] = 'cpu'
      sys.path.insert(0, {os.path.dirname(__file__)!r})
      from pathlib import Path
      import jax, numpy as np
      import test_batch as t
      from omnimotion_jax import pipeline, workdir
      from omnimotion_jax.train import loop, sampler
      assert jax.device_count() == 2
      root = Path({str(tmp_path)!r})
      config = t._config('train.hard_mining.start=20', 'train.hard_mining.every=20')  # 50 steps.
      dirs = t.make_workdirs(root, config)
      datas = [sampler.train_data(workdir.load_sequence(w)) for w in dirs]
      for b, d in enumerate(dirs):
        loop.fit(config, d, datas[b])
      worst = {{}}
      for count in (2, 3):
        runs = [root / f'batch{{count}}_{{b}}' for b in range(count)]
        states = loop.fit_many(config, runs, datas[:count])
        assert [int(s.step) for s in states] == [config.train.num_steps] * count
        for b, run in enumerate(runs):
          (run / workdir.STORE).symlink_to(dirs[b] / workdir.STORE)
          a = np.load(pipeline.track_stage(config, dirs[b], grid=8))
          c = np.load(pipeline.track_stage(config, run, grid=8))
          worst[count] = max(worst.get(count, 0.0), float(np.abs(a['tracks'] - c['tracks']).max()))
          assert (a['occluded'] != c['occluded']).mean() < 0.02
      print('max track difference px', worst)
      assert max(worst.values()) < 0.25, worst
      print('ok')
  ''')
  result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                          check=False)
  assert result.returncode == 0 and result.stdout.strip().endswith('ok'), (
      result.stdout[-1000:] + result.stderr[-3000:])
