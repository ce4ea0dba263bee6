"""Batched training (train/batch.py): B videos in one program give each video its own result."""

import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from omnimotion_jax import pipeline
from omnimotion_jax import workdir as workdir_lib
from omnimotion_jax.config import load_config
from omnimotion_jax.data import synthetic
from omnimotion_jax.model import model as model_lib
from omnimotion_jax.model import render
from omnimotion_jax.train import batch
from omnimotion_jax.train import sampler
from omnimotion_jax.train import step as step_lib

NUM_STEPS = 3


def _config():
  return load_config('cpu_tiny', ['train.steps_per_dispatch=1'])


@pytest.fixture(scope='module')
def videos(tmp_path_factory):
  """TrainData of three different synthetic videos of one shape."""
  out = []
  for seed in (1, 2, 3):
    video = synthetic.make_video(seed, num_frames=6, height=40, width=48, num_layers=2)['video']
    work = tmp_path_factory.mktemp(f'video{seed}')
    pipeline.preprocess_stage(video, work, _config())
    out.append(sampler.train_data(workdir_lib.load_sequence(work)))
  return out


def _steps(config, video_shape, devices=None):
  tc = config.train
  args = (model_lib.model_config(config.model), video_shape, *step_lib.train_configs(tc),
          tc.hard_mining.start, tc.steps_per_dispatch, tc.remat_chunks)
  return step_lib.compiled_train_steps(*args), batch.compiled_batched_steps(*args, devices)


def _run(fn, state, data, key):
  metrics = []
  for _ in range(NUM_STEPS):
    state, m = fn(state, data, key)
    metrics.append(jax.device_get(m['loss']))
  return jax.device_get(state), np.asarray(metrics)


@pytest.mark.parametrize('num_videos', [1, 3])
def test_a_batch_gives_each_video_the_result_of_training_it_alone(videos, num_videos):
  config = _config()
  video_shape = render.VideoShape(*videos[0].frames.shape[:3])
  (model, tx, _, single), (_, _, _, batched) = _steps(config, video_shape)
  init_key, key = jax.random.split(jax.random.PRNGKey(config.seed))
  alone = [_run(single, step_lib.create_train_state(model, tx, init_key, video_shape),
                jax.device_put(d), key) for d in videos[:num_videos]]
  states = batch.stack([step_lib.create_train_state(model, tx, init_key, video_shape)
                        for _ in range(num_videos)])
  together, losses = _run(batched, states, batch.stack(videos[:num_videos]),
                          batch.stack([key] * num_videos))
  for b, (state, loss) in enumerate(alone):
    np.testing.assert_allclose(losses[:, b], loss, rtol=1e-5)  # Step 1 included.
    for x, y in zip(jax.tree_util.tree_leaves(batch.unstack(together, b).params),
                    jax.tree_util.tree_leaves(state.params)):
      np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
  if num_videos > 1:  # Different videos really train differently.
    assert not np.allclose(losses[:, 0], losses[:, 1])


def test_videos_of_different_shapes_are_refused(videos):
  small = jax.tree_util.tree_map(lambda x: x[:4], videos[0])
  with pytest.raises(ValueError, match='one shape'):
    batch.stack([videos[0], small])


def test_the_video_axis_shards_over_devices_with_the_same_results(tmp_path):
  # Forced host devices must be set before jax starts: a fresh interpreter.
  script = textwrap.dedent(f'''
      import os, sys
      os.environ['XLA_FLAGS'] = '--xla_force_host_platform_device_count=2'
      os.environ['JAX_PLATFORMS'] = 'cpu'
      sys.path.insert(0, {os.path.dirname(__file__)!r})
      import jax, numpy as np
      import test_batch as t
      from omnimotion_jax.model import render
      from omnimotion_jax.train import batch, sampler, step as step_lib
      from omnimotion_jax.data import synthetic
      from omnimotion_jax import pipeline, workdir
      assert jax.device_count() == 2
      data = []
      for seed in (1, 2):
        video = synthetic.make_video(seed, num_frames=6, height=40, width=48,
                                     num_layers=2)['video']
        pipeline.preprocess_stage(video, f'{tmp_path}/v{{seed}}', t._config())
        data.append(sampler.train_data(workdir.load_sequence(f'{tmp_path}/v{{seed}}')))
      config = t._config()
      shape = render.VideoShape(*data[0].frames.shape[:3])
      (model, tx, _, single), (_, _, _, sharded) = t._steps(config, shape, tuple(jax.devices()))
      init_key, key = jax.random.split(jax.random.PRNGKey(config.seed))
      state = step_lib.create_train_state(model, tx, init_key, shape)
      out, _ = sharded(batch.stack([state, state]), batch.stack(data), batch.stack([key, key]))
      assert len(jax.tree_util.tree_leaves(out.params)[0].sharding.device_set) == 2
      alone, _ = single(step_lib.create_train_state(model, tx, init_key, shape),
                        jax.device_put(data[1]), key)
      for x, y in zip(jax.tree_util.tree_leaves(batch.unstack(out, 1).params),
                      jax.tree_util.tree_leaves(alone.params)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)
      print('ok')
  ''')
  result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                          check=False)
  assert result.returncode == 0 and result.stdout.strip().endswith('ok'), result.stderr[-2000:]
