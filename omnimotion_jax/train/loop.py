"""The resumable training loop: resume, dispatch, hard-mining refresh, logging, checkpoints.

`fit` drives the compiled steps of step.py over a run folder (workdir.py names its files). A
SIGINT/SIGTERM checkpoints and stops between dispatches; every event step falls on a dispatch
boundary, so a resumed run replays the same steps as an uninterrupted one.
"""

import dataclasses
import json
import signal
import time
from pathlib import Path

import jax
import jax.numpy as jnp
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


def fit(config: ml_collections.ConfigDict, workdir: str | Path, data: sampler.TrainData, *,
        stop_at: int | None = None, on_checkpoint=None) -> step_lib.TrainState:
  """Optimises the model for `config.train.num_steps`, resuming from `workdir` if possible.

  Args:
    config: the full config.
    workdir: run folder; gets checkpoints/, config.json, metrics.jsonl, train.json (workdir.py).
    data: the video's TrainData (numpy or jax arrays).
    stop_at: stop (with a checkpoint) once this step is reached, as if interrupted.
    on_checkpoint: optional callback(step, state) run at every periodic and final checkpoint
      (e.g. pseudo-depth snapshots for the report).

  Returns:
    The final (or interrupted) TrainState.
  """
  tc = config.train
  validate_schedule(tc)
  workdir = Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  check_resumable(config, workdir)
  n, h, w = data.frames.shape[:3]
  video = render.VideoShape(n, h, w)
  model_cfg = model_lib.model_config(config.model)
  model, tx, multi, single = step_lib.compiled_train_steps(
      model_cfg, video, *step_lib.train_configs(tc), tc.hard_mining.start, tc.steps_per_dispatch,
      tc.remat_chunks)
  init_key, loop_key = jax.random.split(jax.random.PRNGKey(config.seed))
  flows_adjacent = np.asarray(data.flows)[np.asarray(data.adjacent_pair)]
  state = step_lib.create_train_state(model, tx, init_key, video)
  if tc.loss.w_motion_depth > 0:
    labels = priors.video_motion_labels(data, priors.PriorsConfig(**tc.priors))
    data = dataclasses.replace(data, motion_labels=labels)
  data = jax.device_put(data)
  hard = priors.HardMiningConfig(**tc.hard_mining)

  mngr = checkpoint.manager(workdir / workdir_lib.CHECKPOINTS, tc.checkpoint_keep)
  restored = checkpoint.restore_latest(mngr, state)
  if restored is not None:
    state = restored
  workdir_lib.save_config(workdir, config)
  start_step = int(state.step)
  metrics_path = workdir / workdir_lib.METRICS
  _trim_metrics(metrics_path, start_step)

  step = start_step
  t_start = time.time()
  bar = progress.bar(total=tc.num_steps, initial=step, desc='train')
  with _StopFlag() as flag, metrics_path.open('a') as log:
    while step < tc.num_steps and not flag.stop and (stop_at is None or step < stop_at):
      if tc.sampling.hard_mining_fraction > 0 and hard.due(step):
        error_map, frame_error = priors.adjacent_error_maps(
            priors.compiled_error_mapper(model_cfg, video), state.params, flows_adjacent, video,
            hard, chunk_size=config.track.chunk_size)
        state = state.replace(error_map=jnp.asarray(error_map),
                              frame_error=jnp.asarray(frame_error))
      # Whole dispatches, then single steps for a remainder (every event step is a boundary).
      num = tc.steps_per_dispatch if step + tc.steps_per_dispatch <= tc.num_steps else 1
      state, metrics = (multi if num == tc.steps_per_dispatch else single)(state, data, loop_key)
      step += num
      bar.update(num)
      if step % tc.log_every == 0 or step == tc.num_steps:
        m = _to_python(metrics)
        m.update(step=step, wall_s=round(time.time() - t_start, 3))
        log.write(json.dumps(m) + '\n')
        log.flush()
        bar.set_postfix({'loss': f'{m["loss"]:.3f}', 'flow': f'{m["loss/flow"]:.2f}',
                         'rgb': f'{m["loss/rgb"]:.4f}', 'skip': m['num_skipped']}, refresh=False)
      if step % tc.checkpoint_every == 0 and step < tc.num_steps:
        checkpoint.save(mngr, step, state)
        if on_checkpoint:
          on_checkpoint(step, state)
    bar.close()
    # A finished run resumed again has nothing new, and a run stopped right after a periodic
    # checkpoint already has this step on disk (saving it again is an error in orbax).
    if (step > start_step or restored is None) and mngr.latest_step() != step:
      checkpoint.save(mngr, step, state, wait=True)
    periodic = step % tc.checkpoint_every == 0 and step < tc.num_steps  # Already called.
    if on_checkpoint and step > start_step and not periodic:
      on_checkpoint(step, state)
  mngr.close()
  elapsed = time.time() - t_start
  summary = {'steps_done': step, 'start_step': start_step, 'wall_s': elapsed,
             'steps_per_s': (step - start_step) / max(elapsed, 1e-9),
             'num_skipped': int(state.num_skipped), 'finished': step >= tc.num_steps}
  workdir_lib.write_json(workdir / workdir_lib.TRAIN_SUMMARY, summary)
  if flag.stop and step < tc.num_steps:
    raise TrainingInterrupted(
        f'training stopped by a signal at step {step}/{tc.num_steps}; checkpoint saved in '
        f'{workdir / workdir_lib.CHECKPOINTS}. Run the same command again to resume.')
  return state
