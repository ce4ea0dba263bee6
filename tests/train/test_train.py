"""Training: one step, loss decrease, NaN skipping, bit-identical resume, no retracing, sampling."""

import dataclasses
import json
import os
import shutil
import signal

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from omnimotion_jax import pipeline
from omnimotion_jax.model import render
from omnimotion_jax.train import sampler
from omnimotion_jax.data import synthetic
from omnimotion_jax import workdir as workdir_lib
from omnimotion_jax.train import loop as train
from omnimotion_jax.train import priors
from omnimotion_jax.train import step as step_lib
from omnimotion_jax.model import model as model_lib
from omnimotion_jax.config import apply_override, legacy_train_fields, load_config
from omnimotion_jax.errors import TrainingInterrupted, UserInputError


def _config(**train_overrides):
  """cpu_tiny with train fields overridden by name (as `--set train.NAME=...` takes them)."""
  config = load_config('cpu_tiny')
  for k, v in train_overrides.items():
    apply_override(config, f'train.{k}={v!r}')
  return config


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
  """A preprocessed tiny synthetic video (frames written as PNGs, then the real preprocess)."""
  root = tmp_path_factory.mktemp('train')
  sample = synthetic.make_video(7, num_frames=8, height=40, width=48, num_layers=2)
  frames_dir = root / 'frames'
  frames_dir.mkdir()
  for i, frame in enumerate(sample['video']):
    cv2.imwrite(str(frames_dir / f'{i:05d}.png'), frame[..., ::-1])
  work = root / 'work'
  pipeline.preprocess_stage(str(frames_dir), work, _config())
  return work


@pytest.fixture(scope='module')
def data(workdir):
  return sampler.train_data(workdir_lib.load_sequence(workdir))


def _setup(config, data):
  video = render.VideoShape(*data.frames.shape[:3])
  model = model_lib.OmniMotion(model_lib.model_config(config.model))
  samp_cfg, loss_cfg, opt_cfg = step_lib.train_configs(config.train, config.model.kind)
  tx = step_lib.make_optimizer(opt_cfg)
  state = step_lib.create_train_state(model, tx, jax.random.PRNGKey(0), video)
  step = step_lib.make_train_step(model, tx, samp_cfg, loss_cfg,
                                  config.train.hard_mining.start)
  return model, video, state, step


@pytest.fixture(scope='module')
def fast_step(data):
  """(config, jitted step donating its state): one compile for the tests below."""
  # Learning rates x10 so that 50 steps move the maps measurably (the defaults are for 100k).
  config = _config(lr_time_net=1e-2, lr_bijection=1e-3, lr_canonical=3e-3)
  return config, jax.jit(_setup(config, data)[3], donate_argnums=0)


def test_one_step_runs_and_loss_decreases(data, fast_step):
  config, step = fast_step
  model, video, state, _ = _setup(config, data)
  d = jax.device_put(data)
  key = jax.random.PRNGKey(1)
  batch = sampler.sample_batch(jax.random.PRNGKey(5), d, jnp.int32(0), sampler.SamplerConfig(**config.train.sampling), state.error_map, state.frame_error, jnp.bool_(False))
  flow_error = jax.jit(lambda p: step_lib.compute_losses(model, p, batch, jax.random.PRNGKey(6), video,
                                                      step_lib.LossConfig(**config.train.loss))['flow'])
  before = float(flow_error(state.params))
  for _ in range(50):
    state, metrics = step(state, d, key)
  after = float(flow_error(state.params))
  assert int(state.step) == 50 and int(state.num_skipped) == 0
  assert all(np.isfinite(float(v)) for v in jax.tree_util.tree_leaves(metrics))
  assert after < 0.8 * before, (before, after)


def test_non_finite_step_is_skipped(data, fast_step):
  config, step = fast_step
  _, _, state, _ = _setup(config, data)
  bad = dataclasses.replace(data, frames=np.full_like(data.frames, np.nan))
  params0 = jax.tree_util.tree_map(np.asarray, state.params)
  state, metrics = step(state, jax.device_put(bad), jax.random.PRNGKey(1))
  assert not bool(metrics['finite'])
  assert int(state.num_skipped) == 1 and int(state.step) == 1
  for a, b in zip(jax.tree_util.tree_leaves(params0), jax.tree_util.tree_leaves(state.params)):
    np.testing.assert_array_equal(a, np.asarray(b))
  assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree_util.tree_leaves(state.opt_state))
  state, metrics = step(state, jax.device_put(data), jax.random.PRNGKey(1))
  assert bool(metrics['finite']) and int(state.num_skipped) == 1
  changed = any(not np.array_equal(a, np.asarray(b)) for a, b in zip(
      jax.tree_util.tree_leaves(params0), jax.tree_util.tree_leaves(state.params)))
  assert changed


def _resume_config(**overrides):
  """Hard mining and the motion-depth prior on."""
  return _config(**{**dict(num_steps=24, checkpoint_every=8, log_every=4, hard_mining_start=8,
                           hard_mining_every=8, hard_mining_stride=4, steps_per_dispatch=4,
                           w_motion_depth=1.0, motion_depth_steps=16), **overrides})


def test_fit_compiles_each_step_function_once(tmp_path, data):
  # The production path: 14 steps = three dispatches of 4 (the last one after the hard-mining
  # refresh at step 8 puts new error maps in the state) plus a remainder of 2 single steps.
  config = _resume_config(num_steps=14)
  tc = config.train
  video = render.VideoShape(*data.frames.shape[:3])
  model_cfg = model_lib.model_config(config.model)
  # The very functions that fit gets from the same per-process cache.
  _, _, multi, single = step_lib.compiled_train_steps(
      model_cfg, *step_lib.train_configs(tc, config.model.kind), tc.hard_mining.start, tc.steps_per_dispatch,
      tc.remat_chunks)
  assert int(train.fit(config, tmp_path, data).step) == 14
  assert multi is not single
  # pylint: disable=protected-access
  assert multi._cache_size() == 1 and single._cache_size() == 1
  assert priors.compiled_error_mapper(model_cfg, video)._cache_size() == 1


@pytest.fixture(scope='module')
def resume_runs(tmp_path_factory, data):
  """One uninterrupted run (a) and one run (b) stopped at step 12, then by a real SIGTERM right
  after the step-16 checkpoint, then resumed to the end (24 steps).

  Hard-mining refreshes at steps 8 and 16 and the motion labels of the motion-depth prior must
  be replayed identically.
  """
  root = tmp_path_factory.mktemp('resume')
  config = _resume_config()
  straight = train.fit(config, root / 'a', data)
  stopped = train.fit(config, root / 'b', data, stop_at=12)
  send = lambda step, state: step == 16 and os.kill(os.getpid(), signal.SIGTERM)
  with pytest.raises(TrainingInterrupted) as interrupted:
    train.fit(config, root / 'b', data, on_checkpoint=send)
  summary_at_kill = json.loads((root / 'b' / workdir_lib.TRAIN_SUMMARY).read_text())
  resumed = train.fit(config, root / 'b', data)
  return dict(config=config, straight=straight, stopped_step=int(stopped.step),
              kill_message=str(interrupted.value), summary_at_kill=summary_at_kill,
              resumed=resumed, workdir=root / 'b')


def test_stop_at_stops_with_a_checkpoint(resume_runs):
  assert resume_runs['stopped_step'] == 12


def test_sigterm_saves_a_checkpoint_and_raises(resume_runs):
  # Raising keeps any later stage from running on a partly trained model.
  assert 'step 16/24' in resume_runs['kill_message']
  assert resume_runs['summary_at_kill']['steps_done'] == 16


def test_resumed_run_equals_the_uninterrupted_run_bit_for_bit(resume_runs):
  straight, resumed = resume_runs['straight'], resume_runs['resumed']
  assert int(resumed.step) == int(straight.step) == 24
  for a, b in zip(jax.tree_util.tree_leaves(straight), jax.tree_util.tree_leaves(resumed)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert (resume_runs['workdir'] / workdir_lib.CONFIG).exists()
  # Fresh and restored states are placed alike: four runs, one program per step function.
  tc = resume_runs['config'].train
  _, _, multi, single = step_lib.compiled_train_steps(
      model_lib.model_config(resume_runs['config'].model), *step_lib.train_configs(tc, 'volume'),
      tc.hard_mining.start, tc.steps_per_dispatch, tc.remat_chunks)
  # pylint: disable=protected-access
  assert multi._cache_size() == 1 and single._cache_size() <= 1


def test_resume_logs_every_metrics_line_once(resume_runs):
  logged = [l for l in (resume_runs['workdir'] / workdir_lib.METRICS).read_text().splitlines() if l]
  assert len(logged) == 24 // 4
  assert 'loss/motion_depth' in logged[0]


def test_finished_run_reruns_as_a_no_op_and_extends(resume_runs, data, tmp_path):
  config, workdir = resume_runs['config'].copy_and_resolve_references(), tmp_path / 'b'
  shutil.copytree(resume_runs['workdir'], workdir)
  assert int(train.fit(config, workdir, data).step) == 24
  config.train.num_steps = 28
  assert int(train.fit(config, workdir, data).step) == 28


def test_another_training_config_is_refused_naming_the_field(resume_runs, data, tmp_path):
  # It would otherwise continue the finished run; pipeline.train_stage moves such checkpoints
  # aside instead.
  config, workdir = resume_runs['config'].copy_and_resolve_references(), tmp_path / 'b'
  shutil.copytree(resume_runs['workdir'], workdir)
  config.train.loss.motion_depth_steps = 12
  with pytest.raises(UserInputError, match=r'train\.loss\.motion_depth_steps: 16 -> 12'):
    train.fit(config, workdir, data)


def test_motion_depth_prior_targets_near_for_moving_far_for_still_and_skips_unknown(data):
  # Label 1 (moves on its own) pulls the ray's expected depth to motion_depth_near, 0 (follows
  # the camera) to motion_depth_far, and -1 (untrusted flow) is left out of the mean.
  config = _config(w_motion_depth=1.0)
  model, video, state, _ = _setup(config, data)
  batch = sampler.sample_batch(jax.random.PRNGKey(5), jax.device_put(data), jnp.int32(0),
                               sampler.SamplerConfig(**config.train.sampling), state.error_map,
                               state.frame_error, jnp.bool_(False))
  num_rays = batch.weights.size
  labels = jnp.asarray(np.resize([1.0, 0.0, -1.0], num_rays), jnp.float32)
  key = jax.random.PRNGKey(6)
  loss_cfg = step_lib.LossConfig(**config.train.loss)
  term = step_lib.compute_losses(model, state.params, batch, key, video, loss_cfg,
                              motion_labels=labels)['motion_depth']
  out = render.map_pixels(model, state.params, batch.px_src.reshape(-1, 2),
                          jnp.repeat(batch.src, batch.weights.shape[1]),
                          jnp.repeat(batch.tgt, batch.weights.shape[1]), video, key=key)
  depth = np.asarray(jnp.sum(out['weights'] * out['z'], axis=-1))
  lab = np.asarray(labels)
  near, far = config.train.loss.motion_depth_near, config.train.loss.motion_depth_far
  by_hand = np.concatenate([np.abs(depth[lab == 1] - near), np.abs(depth[lab == 0] - far)]).mean()
  np.testing.assert_allclose(float(term), by_hand, rtol=1e-5)
  # Its weight decays linearly to 0 over motion_depth_steps.
  w = lambda step: float(loss_cfg.weights(jnp.int32(step))['motion_depth'])
  steps = config.train.loss.motion_depth_steps
  assert w(0) == 1.0 and abs(w(steps // 2) - 0.5) < 1e-6 and w(steps) == 0.0


def test_checkpoints_of_another_store_or_config_are_set_aside_not_resumed(tmp_path):
  ckpt = tmp_path / workdir_lib.CHECKPOINTS
  (ckpt / '8').mkdir(parents=True)
  # No record of the store (older workdir): set aside, kept on disk.
  moved = pipeline.set_aside_stale_checkpoints(tmp_path, 'key-a')
  assert moved is not None and (moved / '8').is_dir() and not ckpt.exists()
  # Checkpoints of the current store stay where they are.
  (ckpt / '16').mkdir(parents=True)
  assert pipeline.set_aside_stale_checkpoints(tmp_path, 'key-a') is None and ckpt.is_dir()
  # A new store (re-preprocessed with other settings): set aside again.
  assert pipeline.set_aside_stale_checkpoints(tmp_path, 'key-b') is not None
  assert not ckpt.exists() and len(list(tmp_path.glob(f'{workdir_lib.CHECKPOINTS}.stale-*'))) == 2
  # Same store, another model or training config: a finished run must not be silently reused.
  # Bookkeeping fields (more steps, other logging) keep the run resumable.
  config = _config()
  key = train.training_key(config)
  (ckpt / '24').mkdir(parents=True)
  assert pipeline.set_aside_stale_checkpoints(tmp_path, 'key-b', config) is not None
  (ckpt / '24').mkdir(parents=True)
  assert pipeline.set_aside_stale_checkpoints(tmp_path, 'key-b', config) is None
  longer = _config(num_steps=2 * config.train.num_steps, log_every=1, checkpoint_every=5)
  assert train.training_key(longer) == key
  assert pipeline.set_aside_stale_checkpoints(tmp_path, 'key-b', longer) is None
  changed = _config(w_motion_depth=1.0)
  assert train.training_key(changed) != key
  assert pipeline.set_aside_stale_checkpoints(tmp_path, 'key-b', changed) is not None
  assert len(list(tmp_path.glob(f'{workdir_lib.CHECKPOINTS}.stale-*'))) == 4


def test_error_map_concentrates_samples(data):
  config = _config(num_points=400, hard_mining_fraction=0.5, swap_prob=0.0)
  scfg = sampler.SamplerConfig(**config.train.sampling)
  n, h, w = data.frames.shape[:3]
  error_map = np.zeros((n, h, w), np.float32)
  error_map[:, 10:18, 20:28] = 1.0  # 64 of 1920 px.
  frame_error = np.full((n,), 1e-6, np.float32)
  frame_error[3] = 1.0
  d = jax.device_put(data)
  batch = sampler.sample_batch(jax.random.PRNGKey(0), d, jnp.int32(0), scfg,
                               jnp.asarray(error_map), jnp.asarray(frame_error), jnp.bool_(True))
  src = np.asarray(batch.src)
  assert (src == 3).all()
  px = np.asarray(batch.px_src)
  inside = (px[..., 0] >= 20) & (px[..., 0] < 28) & (px[..., 1] >= 10) & (px[..., 1] < 18)
  # Half of the points come from the error map; uniform sampling would put ~3% there.
  assert inside.mean() > 0.45
  off = sampler.sample_batch(jax.random.PRNGKey(0), d, jnp.int32(0), scfg,
                             jnp.asarray(error_map), jnp.asarray(frame_error), jnp.bool_(False))
  px = np.asarray(off.px_src)
  inside = (px[..., 0] >= 20) & (px[..., 0] < 28) & (px[..., 1] >= 10) & (px[..., 1] < 18)
  assert inside.mean() < 0.15


def test_pair_sampling_respects_max_gap_and_adjacent_mass(data):
  config = _config(num_pairs=2000, num_points=2, max_gap_start=2, swap_prob=0.0)
  d = jax.device_put(data)
  n = data.frames.shape[0]
  batch = sampler.sample_batch(jax.random.PRNGKey(3), d, jnp.int32(0), sampler.SamplerConfig(**config.train.sampling), jnp.ones(data.frames.shape[:3]), jnp.ones((n,)), jnp.bool_(False))
  gaps = np.abs(np.asarray(batch.tgt) - np.asarray(batch.src))
  assert gaps.min() >= 1 and gaps.max() <= 2
  assert 0.4 < (gaps == 1).mean() < 0.6


def test_rematerialised_chunks_give_the_same_losses_and_gradients(data):
  config = _config()
  model, video, state, _ = _setup(config, data)
  batch = sampler.sample_batch(jax.random.PRNGKey(5), jax.device_put(data), jnp.int32(0),
                               sampler.SamplerConfig(**config.train.sampling), state.error_map,
                               state.frame_error, jnp.bool_(False))
  loss_cfg = step_lib.LossConfig(**config.train.loss)

  def total(params, num_chunks):
    terms = step_lib.compute_losses(model, params, batch, jax.random.PRNGKey(6), video, loss_cfg,
                                 num_chunks)
    return sum(v for k, v in terms.items() if not k.startswith('_')), terms

  grad = jax.jit(jax.grad(total, has_aux=True), static_argnums=1)
  g1, terms1 = grad(state.params, 1)
  g4, terms4 = grad(state.params, 4)
  for k in terms1:
    np.testing.assert_allclose(terms4[k], terms1[k], rtol=1e-4, atol=1e-6, err_msg=k)
  for a, b in zip(jax.tree_util.tree_leaves(g1), jax.tree_util.tree_leaves(g4)):
    # Float32 sums in another order: equal up to rounding, relative to each leaf's size.
    assert np.linalg.norm(b - a) <= 1e-4 * np.linalg.norm(a) + 1e-9
  with pytest.raises(ValueError, match='equal chunks'):
    grad(state.params, 3)


def test_a_run_saved_in_the_0_1_config_layout_resumes_in_place(resume_runs, data, tmp_path):
  # 0.1 kept config.train flat (and hashed it so in trained_on.txt): the same run, migrated, must
  # be recognised and resumed, not set aside as another config.
  config, workdir = resume_runs['config'].copy_and_resolve_references(), tmp_path / 'b'
  shutil.copytree(resume_runs['workdir'], workdir)
  saved = json.loads((workdir / workdir_lib.CONFIG).read_text())
  flat = {k: v for k, v in saved['train'].items() if not isinstance(v, dict)}
  for old, path in legacy_train_fields().items():
    section, name = path.split('.')
    flat[old] = saved['train'][section][name]
  saved['train'] = flat
  (workdir / workdir_lib.CONFIG).write_text(json.dumps(saved))
  (workdir / workdir_lib.TRAINED_ON).write_text('store-key 0123456789ab')  # A 0.1 hash.
  assert pipeline.set_aside_stale_checkpoints(workdir, 'store-key', config) is None
  assert int(train.fit(config, workdir, data).step) == 24


def test_the_compiled_steps_make_no_implicit_host_device_transfer(data):
  # Inside the loop everything stays on the device: state, data and key are device arrays and
  # the step is compiled once; an accidental numpy constant or host callback would be a copy per
  # step (slow on an accelerator). (The config of the runs above: their compiled steps.)
  config = _resume_config()
  data = train.prepare_data(config, data)  # With the motion labels, as fit passes it.
  tc = config.train
  video = render.VideoShape(*data.frames.shape[:3])
  model, tx, multi, single = step_lib.compiled_train_steps(
      model_lib.model_config(config.model), *step_lib.train_configs(tc, config.model.kind),
      tc.hard_mining.start, tc.steps_per_dispatch, tc.remat_chunks)
  # Placed as fit places them (committed to the first device).
  put = lambda tree: jax.device_put(tree, jax.local_devices()[0])
  state = put(step_lib.create_train_state(model, tx, jax.random.PRNGKey(0), video))
  d, key = put(data), put(jax.random.PRNGKey(1))
  with jax.transfer_guard('disallow'):
    for fn in (single, multi):
      state, metrics = fn(state, d, key)
    jax.block_until_ready(metrics)
  assert int(jax.device_get(state.step)) == 5


def test_the_surface_model_fits_compiling_each_step_function_once(tmp_path, data):
  # model.kind='surface' through the production loop: dispatches of 4, a hard-mining refresh at
  # step 8 (its error maps come from the surface mapper), the motion-depth prior on its surface.
  config = _resume_config(num_steps=14)
  for item in ('model.kind=surface', 'model.surface.permutation=(0,1,2)',
               'model.surface.plane_sizes=(6,16)',
               'model.surface.time_line_sizes=(3,6)', 'model.surface.depth_grid=(4,8,8)',
               'train.surface_loss.w_motion_depth=1.0'):
    apply_override(config, item)
  tc = config.train
  video = render.VideoShape(*data.frames.shape[:3])
  model_cfg = model_lib.model_config(config.model)
  _, _, multi, single = step_lib.compiled_train_steps(
      model_cfg, *step_lib.train_configs(tc, 'surface'), tc.hard_mining.start,
      tc.steps_per_dispatch, tc.remat_chunks)
  state = train.fit(config, tmp_path, data)
  assert int(state.step) == 14 and int(state.num_skipped) == 0
  assert set(state.params) == {'bijection', 'depth'}
  # pylint: disable=protected-access
  assert multi._cache_size() == 1 and single._cache_size() == 1
  assert priors.compiled_error_mapper(model_cfg, video)._cache_size() == 1
  lines = [json.loads(line) for line in (tmp_path / workdir_lib.METRICS).read_text().splitlines()]
  assert lines[-1]['loss/motion_depth'] > 0 and 'loss/surface' in lines[-1]
