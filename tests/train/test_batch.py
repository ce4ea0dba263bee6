"""Batched training (train/batch.py, loop.fit_many): B videos of different lengths and sizes in
one program give each video the result of training it alone."""

import dataclasses
import json

import jax
import numpy as np
import pytest

from omnimotion_jax import checkpoint
from omnimotion_jax import pipeline
from omnimotion_jax import workdir as workdir_lib
from omnimotion_jax.config import load_config
from omnimotion_jax.data import synthetic
from omnimotion_jax.errors import UserInputError
from omnimotion_jax.model import model as model_lib
from omnimotion_jax.model import render
from omnimotion_jax.train import batch
from omnimotion_jax.train import loop
from omnimotion_jax.train import parallel
from omnimotion_jax.train import sampler
from omnimotion_jax.train import step as step_lib

NUM_STEPS = 3
# (frames, height, width): no video is the largest in every dimension, so each gets padded. The
# third has the first one's size (other content): training alone compiles once per size.
SHAPES = ((6, 40, 48), (5, 44, 40), (6, 40, 48))


def _config(*overrides):
  """cpu_tiny with a smaller bijection and field (half the compile time; the batching does not
  depend on the model's size), hard mining from step 4 (every 4): in-process tests share one
  compiled step."""
  return load_config('cpu_tiny', [
      'model.bijection.permutation=(0,1)', 'model.num_samples=4', 'model.canonical.num_layers=2',
      'train.steps_per_dispatch=1', 'train.hard_mining.start=4', 'train.hard_mining.every=4',
      *overrides])


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


def _steps(config, devices):
  """(single-video steps, batched steps over `devices`), as fit / fit_many use them."""
  tc = config.train
  args = (model_lib.model_config(config.model), *step_lib.train_configs(tc, config.model.kind),
          tc.hard_mining.start, tc.steps_per_dispatch, tc.remat_chunks)
  return (step_lib.compiled_train_steps(*args),
          batch.compiled_batched_steps(*args, tuple(devices)))


def _run(fn, state, data, key):
  """NUM_STEPS steps -> (final state, {metric: [NUM_STEPS, ...]})."""
  metrics = []
  for _ in range(NUM_STEPS):
    state, m = fn(state, data, key)
    metrics.append(jax.device_get(m))
  return jax.device_get(state), {k: np.stack([m[k] for m in metrics]) for k in metrics[0]}


def _shape(data):
  return render.VideoShape(*data.frames.shape[:3])


def _need_devices(count: int):
  # conftest.py forces two CPU devices; on an accelerator with one chip these cases skip.
  if jax.device_count() < count:
    pytest.skip(f'needs {count} devices, {jax.device_count()} present')


def test_the_cpu_tests_see_two_devices():
  if jax.default_backend() == 'cpu':
    assert jax.device_count() == 2


# Three videos on two devices: an odd batch (a copy of the last fills the fourth slot), every
# video padded. Each case compiles its own program, so the list is one case long (two videos on
# one device: the surface case below).
@pytest.mark.parametrize('num_videos,num_devices', [(3, 2)])
def test_a_padded_batch_gives_each_video_the_result_of_training_it_alone(videos, num_videos,
                                                                         num_devices):
  _need_devices(num_devices)
  config = _config()
  devices = jax.devices()[:num_devices]
  (model, tx, _, single), (_, _, _, batched) = _steps(config, devices)
  init_key, key = jax.random.split(jax.random.PRNGKey(config.seed))
  chosen = videos[:num_videos]
  alone = [_run(single, step_lib.create_train_state(model, tx, init_key, _shape(d)),
                jax.device_put(d), key) for d in chosen]
  padded = batch.padded_shape(videos)  # Larger than each video: every one is padded.
  assert all(d.frames.shape[:3] != padded[:3] for d in chosen)
  slots = batch.batch_slots(num_videos, num_devices)  # 3 on 2 devices: a copy fills slot 4.
  states = batch.stack([batch.pad_state(
      step_lib.create_train_state(model, tx, init_key, _shape(chosen[i])), padded) for i in slots])
  data = batch.stack([batch.pad_data(chosen[i], padded) for i in slots])
  together, metrics = _run(batched, states, data, batch.stack([key] * len(slots)))
  for b, (state, single_metrics) in enumerate(alone):
    for name in ('loss', 'grad_norm', 'loss/flow', 'loss/rgb', 'loss/smooth'):
      # The first step to 1e-5; later ones drift by float reordering (1e-5 relative at step 3).
      np.testing.assert_allclose(metrics[name][0, b], single_metrics[name][0], rtol=1e-5,
                                 err_msg=name)
      np.testing.assert_allclose(metrics[name][:, b], single_metrics[name], rtol=1e-4,
                                 err_msg=name)
    video = batch.crop_state(batch.unstack(together, b), chosen[b].size)
    # Adam divides by sqrt(v): a near-zero gradient summed in another order can move its
    # parameter by a part of one learning rate (measured: 1.4e-5 on 1 of 1024 after 3 steps).
    for x, y in zip(jax.tree_util.tree_leaves(video.params), jax.tree_util.tree_leaves(state.params)):
      np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-4)
    assert video.error_map.shape == state.error_map.shape
  if num_videos > 1:  # Different videos really train differently.
    assert not np.allclose(metrics['loss'][:, 0], metrics['loss'][:, 1])


def test_the_sampler_never_draws_padding(videos):
  small = videos[1]  # 5 frames, padded to 6 and to the widest and tallest video.
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
  tx = step_lib.make_optimizer(step_lib.train_configs(config.train, config.model.kind)[2])
  state = step_lib.create_train_state(model, tx, jax.random.PRNGKey(0), _shape(videos[0]))
  state = state.replace(error_map=np.random.default_rng(0).random(state.error_map.shape))
  padded = batch.pad_state(state, batch.padded_shape(videos))
  assert padded.error_map.shape == batch.padded_shape(videos)[:3] != state.error_map.shape
  np.testing.assert_array_equal(batch.crop_state(padded, videos[0].size).error_map,
                                state.error_map)
  with pytest.raises(ValueError, match='one shape'):
    batch.stack([videos[0], videos[1]])
  assert batch.batch_slots(3, 2) == [0, 1, 2, 2] and batch.batch_slots(2, 2) == [0, 1]


@pytest.fixture(scope='module')
def run_dirs(tmp_path_factory):
  root = tmp_path_factory.mktemp('runs')
  return root, make_workdirs(root, _config())


def test_an_interrupted_batch_resumes_bit_identically_and_writes_each_videos_run(run_dirs):
  root, dirs = run_dirs
  config = _config('train.num_steps=12', 'train.checkpoint_every=4', 'train.log_every=4')
  datas = [sampler.train_data(workdir_lib.load_sequence(w)) for w in dirs]
  straight = loop.fit_many(config, [root / f'a{i}' for i in range(3)], datas)
  stopped = loop.fit_many(config, [root / f'b{i}' for i in range(3)], datas, stop_at=8)
  assert all(int(s.step) == 8 for s in stopped)
  resumed = loop.fit_many(config, [root / f'b{i}' for i in range(3)], datas)
  for b in range(3):
    for x, y in zip(jax.tree_util.tree_leaves(straight[b]), jax.tree_util.tree_leaves(resumed[b])):
      np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    lines = (root / f'b{b}' / workdir_lib.METRICS).read_text().splitlines()
    assert [json.loads(l)['step'] for l in lines] == [4, 8, 12]
    summary = json.loads((root / f'b{b}' / workdir_lib.TRAIN_SUMMARY).read_text())
    assert summary['batch_videos'] == 3 and summary['finished']
  # A video's checkpoint is the one training it alone writes: `fit` resumes it as finished.
  alone = loop.fit(config, root / 'b1', datas[1])
  assert int(alone.step) == 12 and alone.error_map.shape == datas[1].frames.shape[:3]
  with checkpoint.manager(root / 'b1' / workdir_lib.CHECKPOINTS) as mngr:
    assert mngr.latest_step() == 12


def test_after_a_full_run_a_batch_on_two_devices_tracks_like_each_video_alone(run_dirs):
  # cpu_tiny's 50 steps (hard-mining maps refreshed per video) for 3 videos of two sizes
  # on 2 devices (a copy of the last video fills the fourth slot), then tracked.
  _need_devices(2)
  root, dirs = run_dirs
  config = _config()
  datas = [sampler.train_data(workdir_lib.load_sequence(w)) for w in dirs]
  runs = [root / f'batch_{b}' for b in range(3)]
  states = loop.fit_many(config, runs, datas)
  assert [int(s.step) for s in states] == [config.train.num_steps] * 3
  worst, flipped = 0.0, 0.0
  for b, run in enumerate(runs):
    loop.fit(config, dirs[b], datas[b])
    (run / workdir_lib.STORE).symlink_to(dirs[b] / workdir_lib.STORE)
    a = np.load(pipeline.track_stage(config, dirs[b], grid=8))
    c = np.load(pipeline.track_stage(config, run, grid=8))
    worst = max(worst, float(np.abs(a['tracks'] - c['tracks']).max()))
    flipped = max(flipped, float((a['occluded'] != c['occluded']).mean()))
  print(f'largest track difference {worst:.4f} px, occlusion flags differing {flipped:.4f}')
  assert worst < 0.25 and flipped < 0.02, (worst, flipped)


def test_data_parallel_training_splits_the_rays_and_averages_the_gradients(run_dirs):
  # One video over 2 devices (train/parallel.py): the sharded step equals the same step emulated
  # on one device by vmap with a named axis (each member draws its own half of the pairs; pmean
  # of losses and gradients), and `fit` runs, checkpoints and resumes with it bit-identically.
  _need_devices(2)
  root, dirs = run_dirs
  config = _config('train.num_steps=8', 'train.checkpoint_every=4')
  data = sampler.train_data(workdir_lib.load_sequence(dirs[0]))
  tc = config.train
  samp, loss_cfg, opt = step_lib.train_configs(tc, config.model.kind)
  devices = tuple(jax.devices())
  model, tx, _, step = parallel.compiled_parallel_steps(
      model_lib.model_config(config.model), samp, loss_cfg, opt, tc.hard_mining.start, 1,
      tc.remat_chunks, devices)
  init_key, key = jax.random.split(jax.random.PRNGKey(config.seed))
  fresh = lambda: step_lib.create_train_state(model, tx, init_key, _shape(data))
  place = lambda x: jax.device_put(x, parallel.replicated(devices))
  out, metrics = step(place(fresh()), place(data), place(key))
  emulated = jax.jit(jax.vmap(step_lib.make_train_step(
      model, tx, parallel.per_device_sampling(samp, 2), loss_cfg, tc.hard_mining.start,
      axis_name=parallel.RAY_AXIS), in_axes=None, axis_size=2, axis_name=parallel.RAY_AXIS))
  ref, ref_metrics = emulated(fresh(), data, key)
  np.testing.assert_allclose(metrics['loss'], ref_metrics['loss'][0], rtol=1e-5)
  for x, y in zip(jax.tree_util.tree_leaves(out.params), jax.tree_util.tree_leaves(ref.params)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y)[0], rtol=1e-5, atol=1e-5)
  straight = loop.fit(config, root / 'dp_straight', data, devices=devices)
  loop.fit(config, root / 'dp', data, devices=devices, stop_at=4)
  resumed = loop.fit(config, root / 'dp', data, devices=devices)
  assert int(resumed.step) == 8
  for x, y in zip(jax.tree_util.tree_leaves(straight), jax.tree_util.tree_leaves(resumed)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  with pytest.raises(UserInputError, match='multiple of 2'):
    parallel.per_device_sampling(dataclasses.replace(samp, num_pairs=3), 2)


def test_the_surface_model_trains_in_a_padded_batch_as_alone(videos):
  # model.kind='surface' through the same batched step (its parameters do not depend on the
  # video's size, so videos of different sizes stack): two videos on one device.
  # A large Adam eps makes the steps proportional to the gradients. With 1e-8, the near-zero
  # gradients of the couplings' zero-initialised output layers get steps of about one learning
  # rate whose size the summation order (padded and vmapped here) decides, and the runs part.
  config = _config('model.kind=surface', 'model.surface.permutation=(0,1,2)',
                   'train.optim.adam_eps=0.1', 'model.surface.plane_sizes=(6,16)',
                   'model.surface.time_line_sizes=(3,6)', 'model.surface.depth_grid=(4,8,8)')
  (model, tx, _, single), (_, _, _, batched) = _steps(config, jax.devices()[:1])
  init_key, key = jax.random.split(jax.random.PRNGKey(config.seed))
  chosen = videos[::2]  # One size (padded in height), so alone they share one compiled step.
  alone = [_run(single, step_lib.create_train_state(model, tx, init_key, _shape(d)),
                jax.device_put(d), key) for d in chosen]
  padded = batch.padded_shape(videos)
  states = batch.stack([batch.pad_state(
      step_lib.create_train_state(model, tx, init_key, _shape(d)), padded) for d in chosen])
  data = batch.stack([batch.pad_data(d, padded) for d in chosen])
  together, metrics = _run(batched, states, data, batch.stack([key] * 2))
  for b, (state, single_metrics) in enumerate(alone):
    # (Its smoothness term, ~1e-5 after 3 steps, is covered by 'loss'.)
    for name in ('loss', 'grad_norm', 'loss/flow', 'loss/surface'):
      np.testing.assert_allclose(metrics[name][0, b], single_metrics[name][0], rtol=1e-5,
                                 err_msg=name)
      np.testing.assert_allclose(metrics[name][:, b], single_metrics[name], rtol=1e-4,
                                 err_msg=name)
    video = batch.crop_state(batch.unstack(together, b), chosen[b].size)
    np.testing.assert_allclose(video.params['depth']['grid'], state.params['depth']['grid'],
                               rtol=1e-5, atol=1e-4)
    for x, y in zip(jax.tree_util.tree_leaves(video.params['bijection']),
                    jax.tree_util.tree_leaves(state.params['bijection'])):
      np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5)
