"""The resumable training loop: resume, dispatch, hard-mining refresh, logging, checkpoints.

`fit` drives the compiled steps of step.py over a run folder (workdir.py names its files). A
SIGINT/SIGTERM checkpoints and stops between dispatches; every event step falls on a dispatch
boundary, so a resumed run replays the same steps as an uninterrupted one.
"""

import contextlib
import dataclasses
import functools
import json
import signal
import time
from collections.abc import Sequence
from pathlib import Path

import jax
import ml_collections
import numpy as np

from omnimotion_jax import checkpoint
from omnimotion_jax import fileio
from omnimotion_jax import progress
from omnimotion_jax import workdir as workdir_lib
from omnimotion_jax.config import config_hash, flatten_dict, merge_over_default
from omnimotion_jax.errors import TrainingInterrupted, UserInputError
from omnimotion_jax.model import model as model_lib
from omnimotion_jax.model import render
from omnimotion_jax.train import batch as batch_lib
from omnimotion_jax.train import parallel as parallel_lib
from omnimotion_jax.train import priors
from omnimotion_jax.train import sampler
from omnimotion_jax.train import step as step_lib


def validate_schedule(train_cfg: ml_collections.ConfigDict) -> None:
  """Every event step must fall on a dispatch boundary (so resumed runs replay exactly)."""
  k = train_cfg.steps_per_dispatch
  events = {'train.log_every': train_cfg.log_every,
            'train.checkpoint_every': train_cfg.checkpoint_every,
            'train.hard_mining.start': train_cfg.hard_mining.start,
            'train.hard_mining.every': train_cfg.hard_mining.every}
  for name, value in events.items():
    if value % k:
      raise UserInputError(f'{name}={value} must be a multiple of train.steps_per_dispatch={k}.')
  samp = train_cfg.sampling
  if samp.num_points < 2 or samp.num_pairs < 1:
    raise UserInputError('train.sampling.num_pairs must be >= 1 and num_points >= 2.')
  rays = samp.num_pairs * samp.num_points
  smooth_rays = 2 * samp.num_pairs * max(1, int(samp.num_points
                                                 * train_cfg.loss.smooth_points_fraction))
  if train_cfg.remat_chunks < 1 or rays % train_cfg.remat_chunks or (
      smooth_rays % train_cfg.remat_chunks):
    raise UserInputError(f'train.remat_chunks={train_cfg.remat_chunks} must divide both the '
                         f'{rays} rays and the {smooth_rays} smoothness rays of a step.')


class _StopFlag:
  """Turns SIGINT/SIGTERM into a flag checked between dispatches (then checkpoint and exit)."""

  def __init__(self):
    self.stop = False
    self._old = {}

  def __enter__(self):
    for sig in (signal.SIGINT, signal.SIGTERM):
      try:
        self._old[sig] = signal.signal(sig, self._handle)
      except ValueError:  # Not the main thread: no handlers, stop only via stop_at.
        pass
    return self

  def _handle(self, signum, frame):
    del frame
    if self.stop:  # Second signal: give up immediately.
      signal.default_int_handler(signum, None)
    self.stop = True

  def __exit__(self, *exc):
    for sig, old in self._old.items():
      signal.signal(sig, old)


def _trim_metrics(path: Path, step: int) -> None:
  """Drops log lines past `step` (written after the checkpoint a resumed run restarts from)."""
  if not path.exists():
    return
  lines = [l for l in path.read_text().splitlines() if _logged_step(l) <= step]
  fileio.write_text_atomic(path, ''.join(l + '\n' for l in lines))


def _logged_step(line: str) -> float:
  """The step of a metrics line; a line cut short by a kill counts as past every step."""
  try:
    return json.loads(line)['step']
  except (ValueError, KeyError, TypeError):
    return float('inf')


def _to_python(metrics: dict) -> dict:
  return {k: (v.item() if hasattr(v, 'item') else v) for k, v in jax.device_get(metrics).items()}


# Train fields that do not change what a run computes: a run may resume with other values.
RESUMABLE_TRAIN_FIELDS = ('num_steps', 'log_every', 'checkpoint_every', 'checkpoint_keep',
                          'steps_per_dispatch')


def _training_fields(config: dict) -> dict:
  """The parts of a config dict (as saved in config.json) that shape the optimisation."""
  train_cfg = {k: v for k, v in config.get('train', {}).items() if k not in RESUMABLE_TRAIN_FIELDS}
  return {'model': config.get('model'), 'train': train_cfg, 'seed': config.get('seed')}


def training_key(config: ml_collections.ConfigDict) -> str:
  """Hash of everything that shapes the optimisation: model, seed and train config, except the
  bookkeeping fields in RESUMABLE_TRAIN_FIELDS (so a finished run can be extended)."""
  return config_hash(ml_collections.ConfigDict(_training_fields(config.to_dict())))


def changed_training_fields(saved: dict, config: ml_collections.ConfigDict
                            ) -> list[tuple[str, object, object]]:
  """(dotted key, saved value, value now) of the fields that shape the optimisation and differ
  between a saved config dict (config.json of any version: migrated, merged over the defaults)
  and `config`."""
  as_saved = lambda c: json.loads(json.dumps(c.to_dict(), sort_keys=True, default=str))
  old = flatten_dict(_training_fields(as_saved(merge_over_default(saved))))
  new = flatten_dict(_training_fields(as_saved(config)))
  return [(k, old.get(k), new.get(k)) for k in sorted(set(old) | set(new))
          if old.get(k) != new.get(k)]


def check_resumable(config: ml_collections.ConfigDict, workdir: Path) -> None:
  """Raises UserInputError if workdir holds checkpoints of another model or training config.

  Resuming them would continue (or, if finished, silently reuse) a run with other settings.
  pipeline.train_stage moves such checkpoints aside before calling `fit`; this guards direct
  callers of `fit`.
  """
  saved = workdir_lib.load_saved_config(workdir)
  ckpt = workdir / workdir_lib.CHECKPOINTS
  if saved is None or not (ckpt.is_dir() and any(ckpt.iterdir())):
    return
  changed = changed_training_fields(saved, config)
  if changed:
    shown = ', '.join(f'{k}: {old!r} -> {new!r}' for k, old, new in changed[:5])
    more = f' and {len(changed) - 5} more' if len(changed) > 5 else ''
    raise UserInputError(
        f'{ckpt} holds a run with another model or training config ({shown}{more}). Use a new '
        'workdir, or train through `omnimotion-jax train`, which moves such checkpoints aside.')


def prepare_data(config: ml_collections.ConfigDict, data: sampler.TrainData) -> sampler.TrainData:
  """A video's TrainData (numpy) with the motion labels its config's priors need."""
  data = jax.device_get(data)
  losses = config.train.surface_loss if config.model.kind == 'surface' else config.train.loss
  if losses.w_motion_depth > 0:
    labels = priors.video_motion_labels(data, priors.PriorsConfig(**config.train.priors))
    data = dataclasses.replace(data, motion_labels=labels)
  return data


def fit(config: ml_collections.ConfigDict, workdir: str | Path, data: sampler.TrainData, *,
        stop_at: int | None = None, on_checkpoint=None,
        devices: Sequence[jax.Device] | None = None) -> step_lib.TrainState:
  """Optimises the model for `config.train.num_steps`, resuming from `workdir` if possible.

  Args:
    config: the full config.
    workdir: run folder; gets checkpoints/, config.json, metrics.jsonl, train.json (workdir.py).
    data: the video's TrainData (numpy or jax arrays).
    stop_at: stop (with a checkpoint) once this step is reached, as if interrupted.
    on_checkpoint: optional callback(step, state) run at every periodic and final checkpoint
      (e.g. pseudo-depth snapshots for the report).
    devices: several devices split each step's rays between them (data parallelism,
      train/parallel.py); default: one device.

  Returns:
    The final (or interrupted) TrainState.
  """
  callback = None if on_checkpoint is None else (lambda _, step, state: on_checkpoint(step, state))
  parallel = devices is not None and len(devices) > 1
  return _fit_group(config, [Path(workdir)], [data], devices=tuple(devices) if parallel else None,
                    stop_at=stop_at, on_checkpoint=callback, mode='parallel' if parallel
                    else 'single')[0]


def fit_many(config: ml_collections.ConfigDict, workdirs: Sequence[str | Path],
             datas: Sequence[sampler.TrainData], *, devices: Sequence[jax.Device] | None = None,
             stop_at: int | None = None, on_checkpoint=None) -> list[step_lib.TrainState]:
  """`fit` for several videos at once: one vmapped program (train/batch.py), its video axis
  sharded over `devices` (default: all local devices).

  Each video keeps its own run folder, checkpoints, metrics and resume, exactly as `fit` writes
  them (a video trained in a batch can be resumed alone, and the reverse). Videos whose newest
  checkpoints are at different steps train as separate batches, one per start step.
  on_checkpoint: optional callback(index, step, state) per video. Returns the videos' states.
  """
  workdirs = [Path(w) for w in workdirs]
  if len(workdirs) != len(datas) or not workdirs:
    raise ValueError(f'{len(workdirs)} workdirs for {len(datas)} videos.')
  if len(set(w.resolve() for w in workdirs)) != len(workdirs):
    raise UserInputError('fit_many: the same workdir appears twice; give each video its own.')
  devices = tuple(jax.local_devices() if devices is None else devices)
  groups = {}
  for index, workdir in enumerate(workdirs):
    with checkpoint.manager(workdir / workdir_lib.CHECKPOINTS) as mngr:
      groups.setdefault(mngr.latest_step() or 0, []).append(index)
  states = [None] * len(workdirs)
  for members in groups.values():
    callback = None if on_checkpoint is None else (
        lambda i, step, state, members=members: on_checkpoint(members[i], step, state))
    # No more devices than videos: a copy of a video on an idle device would only cost time.
    out = _fit_group(config, [workdirs[i] for i in members], [datas[i] for i in members],
                     devices=devices[:len(members)], stop_at=stop_at, on_checkpoint=callback,
                     mode='batch')
    for i, state in zip(members, out):
      states[i] = state
  return states


def _fit_group(config, workdirs: list[Path], datas, *, devices, stop_at, on_checkpoint, mode):
  """The loop of `fit` (mode 'single', or 'parallel' over devices) and `fit_many` ('batch':
  videos with one start step)."""
  tc = config.train
  validate_schedule(tc)
  for workdir in workdirs:
    workdir.mkdir(parents=True, exist_ok=True)
    check_resumable(config, workdir)
  batched = mode == 'batch'
  model_cfg = model_lib.model_config(config.model)
  compiled = {'single': step_lib.compiled_train_steps, 'batch': batch_lib.compiled_batched_steps,
              'parallel': parallel_lib.compiled_parallel_steps}[mode]
  model, tx, multi, single = compiled(
      model_cfg, *step_lib.train_configs(tc, config.model.kind), tc.hard_mining.start,
      tc.steps_per_dispatch, tc.remat_chunks, *(() if mode == 'single' else (devices,)))
  init_key, loop_key = jax.random.split(jax.random.PRNGKey(config.seed))
  datas = [prepare_data(config, d) for d in datas]
  shapes = [render.VideoShape(*d.frames.shape[:3]) for d in datas]
  flows_adjacent = [d.flows[d.adjacent_pair] for d in datas]
  hard = priors.HardMiningConfig(**tc.hard_mining)

  mngrs = [checkpoint.manager(w / workdir_lib.CHECKPOINTS, tc.checkpoint_keep) for w in workdirs]
  states, restored = [], []
  for mngr, shape in zip(mngrs, shapes):
    fresh = step_lib.create_train_state(model, tx, init_key, shape)
    restored.append(checkpoint.restore_latest(mngr, fresh))
    states.append(fresh if restored[-1] is None else restored[-1])
  start_step = int(states[0].step)
  for workdir in workdirs:
    workdir_lib.save_config(workdir, config)
    _trim_metrics(workdir / workdir_lib.METRICS, start_step)

  if batched:
    padded = batch_lib.padded_shape(datas)
    slots = batch_lib.batch_slots(len(datas), len(devices))
    sharding = batch_lib.video_sharding(devices)
    # One entry per video -> the batch axis (copies fill the slots), on the devices.
    put = lambda items: jax.device_put(batch_lib.stack([items[i] for i in slots]), sharding)
    state = put([batch_lib.pad_state(s, padded) for s in states])
    data = put([batch_lib.pad_data(d, padded) for d in datas])
    keys = put([loop_key] * len(datas))
    video_state = lambda tree, b: batch_lib.crop_state(batch_lib.unstack(tree, b), datas[b].size)
    video_params = lambda tree, b: batch_lib.unstack(tree.params, b)
    video_metrics = batch_lib.unstack
  else:
    # Committed to one device in either case: a state restored from a checkpoint is committed,
    # a fresh one is not, and the compiled step would be compiled again for each.
    place = (functools.partial(jax.device_put, device=jax.local_devices()[0]) if mode == 'single'
             else lambda tree: jax.device_put(tree, parallel_lib.replicated(devices)))
    state, data, keys = place(states[0]), place(datas[0]), place(loop_key)
    video_state = video_metrics = lambda tree, b: tree
    video_params = lambda tree, b: tree.params

  def refresh_maps(state):
    maps = [priors.adjacent_error_maps(
        priors.compiled_error_mapper(model_cfg, shape), video_params(state, b), flows, shape,
        hard, chunk_size=config.track.chunk_size)
            for b, (shape, flows) in enumerate(zip(shapes, flows_adjacent))]
    if not batched:
      return state.replace(error_map=place(maps[0][0]), frame_error=place(maps[0][1]))
    return state.replace(error_map=put([batch_lib.pad_to(m, padded[:3]) for m, _ in maps]),
                         frame_error=put([batch_lib.pad_to(e, padded[:1]) for _, e in maps]))

  def save(step):
    for b, mngr in enumerate(mngrs):
      video = video_state(state, b)
      checkpoint.save(mngr, step, video)
      if on_checkpoint:
        on_checkpoint(b, step, video)

  step = start_step
  t_start = time.time()
  num = len(workdirs)
  bar = progress.bar(total=tc.num_steps, initial=step, unit='step',
                     desc='train' if num == 1 else f'train {num} videos')
  with _StopFlag() as flag, contextlib.ExitStack() as stack:
    logs = [stack.enter_context((w / workdir_lib.METRICS).open('a')) for w in workdirs]
    while step < tc.num_steps and not flag.stop and (stop_at is None or step < stop_at):
      if tc.sampling.hard_mining_fraction > 0 and hard.due(step):
        state = refresh_maps(state)
      # Whole dispatches, then single steps for a remainder (every event step is a boundary).
      size = tc.steps_per_dispatch if step + tc.steps_per_dispatch <= tc.num_steps else 1
      state, metrics = (multi if size == tc.steps_per_dispatch else single)(state, data, keys)
      step += size
      bar.update(size)
      if step % tc.log_every == 0 or step == tc.num_steps:
        metrics = jax.device_get(metrics)
        wall = round(time.time() - t_start, 3)
        for b, log in enumerate(logs):
          m = _to_python(video_metrics(metrics, b))
          m.update(step=step, wall_s=wall)
          log.write(json.dumps(m) + '\n')
          log.flush()
        rate = (step - start_step) / max(time.time() - t_start, 1e-9)
        first = lambda name: np.atleast_1d(metrics[name])[:num]  # Real videos, not copies.
        postfix = {'loss': f'{np.mean(first("loss")):.3f}',
                   'flow': f'{np.mean(first("loss/flow")):.2f}',
                   'skip': int(np.sum(first('num_skipped')))}
        if num > 1:
          postfix['videos/h'] = f'{num * rate * 3600 / tc.num_steps:.1f}'
        bar.set_postfix(postfix, refresh=False)
      if step % tc.checkpoint_every == 0 and step < tc.num_steps:
        save(step)
    bar.close()
  # A finished run resumed again has nothing new; a run stopped right after a periodic
  # checkpoint already has this step on disk (orbax refuses to save a step twice).
  periodic = step % tc.checkpoint_every == 0 and step < tc.num_steps
  out = [video_state(state, b) for b in range(num)]
  for b, mngr in enumerate(mngrs):
    if (step > start_step or restored[b] is None) and mngr.latest_step() != step:
      checkpoint.save(mngr, step, out[b], wait=True)
    if on_checkpoint and step > start_step and not periodic:
      on_checkpoint(b, step, out[b])
    mngr.close()
  elapsed = time.time() - t_start
  for workdir, video in zip(workdirs, out):
    summary = {'steps_done': step, 'start_step': start_step, 'wall_s': elapsed,
               'steps_per_s': (step - start_step) / max(elapsed, 1e-9),
               'num_skipped': int(video.num_skipped), 'finished': step >= tc.num_steps,
               'batch_videos': num}
    workdir_lib.write_json(workdir / workdir_lib.TRAIN_SUMMARY, summary)
  if flag.stop and step < tc.num_steps:
    raise TrainingInterrupted(
        f'training stopped by a signal at step {step}/{tc.num_steps}; checkpoint saved in '
        f'{", ".join(str(w / workdir_lib.CHECKPOINTS) for w in workdirs)}. Run the same command '
        'again to resume.')
  return out
