"""Test-time optimisation: the train state, the jitted train step, and the resumable loop.

One pure `train_step(state, data, root_key) -> (state, metrics)`, jitted once with the state
donated. All per-step randomness comes from `fold_in(root_key, state.step)`, and everything that
changes during training (params, optimiser state, hard-mining error maps, the skip counter) lives in
the state and is checkpointed, so a resumed run continues bit-identically.
"""

import dataclasses
import functools
import json
import signal
import time
from pathlib import Path

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from tqdm.auto import tqdm

from omnimotion_jax import checkpoint
from omnimotion_jax.train import priors as global_motion
from omnimotion_jax.train import losses
from omnimotion_jax.model import render
from omnimotion_jax.train import sampler
from omnimotion_jax import track
from omnimotion_jax.model import model as model_lib
from omnimotion_jax.config import config_hash, flatten_dict
from omnimotion_jax.errors import TrainingInterrupted, UserInputError

PARAM_GROUPS = ('time_net', 'bijection', 'canonical')


@flax.struct.dataclass
class TrainState:
  """Everything that evolves during optimisation.

  Attributes:
    step: [] int32, number of steps taken (0-based index of the next step).
    params: model parameters.
    opt_state: optax state.
    num_skipped: [] int32, steps skipped because the loss or a gradient was not finite.
    error_map: [N, H, W] float32, blurred adjacent-flow mapping error (hard mining).
    frame_error: [N] float32, mean adjacent-flow mapping error per frame (hard mining).
  """
  step: jax.Array
  params: dict
  opt_state: optax.OptState
  num_skipped: jax.Array
  error_map: jax.Array
  frame_error: jax.Array


@dataclasses.dataclass(frozen=True)
class LossConfig:
  """Explicit loss weights and schedule constants (from config.train)."""
  w_flow: float
  w_rgb_ramp_steps: int
  w_rgb_max: float
  w_flow_grad_ramp_steps: int
  w_flow_grad_max: float
  w_depth_range: float
  w_distortion_start: int
  w_distortion_ramp_steps: int
  w_distortion_max: float
  w_smooth: float
  smooth_points_fraction: float
  drop_max_error: bool
  w_motion_depth: float
  motion_depth_steps: int
  motion_depth_near: float
  motion_depth_far: float

  def weights(self, step: jax.Array) -> dict[str, jax.Array]:
    decay = jnp.clip(1.0 - jnp.asarray(step, jnp.float32) / max(self.motion_depth_steps, 1), 0, 1)
    return dict(motion_depth=self.w_motion_depth * decay, **losses.loss_weights(
        step, w_flow=self.w_flow, w_rgb_ramp_steps=self.w_rgb_ramp_steps,
        w_rgb_max=self.w_rgb_max, w_flow_grad_ramp_steps=self.w_flow_grad_ramp_steps,
        w_flow_grad_max=self.w_flow_grad_max, w_depth_range=self.w_depth_range,
        w_distortion_start=self.w_distortion_start,
        w_distortion_ramp_steps=self.w_distortion_ramp_steps,
        w_distortion_max=self.w_distortion_max, w_smooth=self.w_smooth))


def loss_config(train_cfg: ml_collections.ConfigDict) -> LossConfig:
  return LossConfig(**{f.name: train_cfg[f.name] for f in dataclasses.fields(LossConfig)})


def sampler_config(train_cfg: ml_collections.ConfigDict) -> sampler.SamplerConfig:
  return sampler.SamplerConfig(
      **{f.name: train_cfg[f.name] for f in dataclasses.fields(sampler.SamplerConfig)})


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
  """Explicit optimiser parameters (from config.train)."""
  lr_time_net: float
  lr_bijection: float
  lr_canonical: float
  lr_decay_every: int
  lr_decay_factor: float
  adam_b1: float
  adam_b2: float
  adam_eps: float
  grad_clip_norm: float


def optimizer_config(train_cfg: ml_collections.ConfigDict) -> OptimizerConfig:
  return OptimizerConfig(**{f.name: train_cfg[f.name] for f in dataclasses.fields(OptimizerConfig)})


def lr_schedules(train_cfg) -> dict[str, optax.Schedule]:
  """Step-decay (StepLR) schedule per parameter group; takes config.train or OptimizerConfig."""
  base = {'time_net': train_cfg.lr_time_net, 'bijection': train_cfg.lr_bijection,
          'canonical': train_cfg.lr_canonical}
  return {name: optax.exponential_decay(lr, transition_steps=train_cfg.lr_decay_every,
                                        decay_rate=train_cfg.lr_decay_factor, staircase=True)
          for name, lr in base.items()}


def make_optimizer(train_cfg) -> optax.GradientTransformation:
  """Adam with one learning-rate schedule per group (time net, bijection, canonical field)."""
  adam = lambda sched: optax.adam(sched, b1=train_cfg.adam_b1, b2=train_cfg.adam_b2,
                                  eps=train_cfg.adam_eps)
  tx = optax.multi_transform({k: adam(s) for k, s in lr_schedules(train_cfg).items()},
                             lambda params: {k: k for k in params})
  if train_cfg.grad_clip_norm > 0:
    # A global norm (the reference's clip, when enabled, was per tensor).
    tx = optax.chain(optax.clip_by_global_norm(train_cfg.grad_clip_norm), tx)
  return tx


def create_train_state(model: model_lib.OmniMotion, tx: optax.GradientTransformation,
                       key: jax.Array, video: render.VideoShape) -> TrainState:
  params = model_lib.init_params(model, key)
  n, h, w = video.num_frames, video.height, video.width
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                    num_skipped=jnp.zeros((), jnp.int32), error_map=jnp.ones((n, h, w)),
                    frame_error=jnp.ones((n,)))


def _adjacent_forward(data: sampler.TrainData) -> tuple[np.ndarray, np.ndarray]:
  """(flows [N-1, H, W, 2], cycle masks [N-1, H, W]) of the pairs (i, i+1), as numpy."""
  rows = np.asarray(data.adjacent_pair)[:data.frames.shape[0] - 1]
  return np.asarray(data.flows)[rows], np.asarray(data.cycle)[rows]


def init_frame_affine(params: dict, data: sampler.TrainData, train_cfg) -> tuple[dict, dict]:
  """params with the bijection's per-frame affine table set to the flows' dominant motion.

  Fitted on the cycle-consistent pixels of the adjacent pairs (i, i+1); see global_motion.py.
  Deterministic (fixed numpy seed), so a resumed run rebuilds the same initial state.

  Returns:
    (params, info): info has the fitted table, the per-pair inlier fractions and the scale.
  """
  n = data.frames.shape[0]
  if n < 2:
    return params, {}
  affines, info = global_motion.estimate_frame_affines(
      *_adjacent_forward(data), num_points=train_cfg.motion_fit_points,
      num_hypotheses=train_cfg.motion_fit_hypotheses, inlier_px=train_cfg.motion_fit_inlier_px,
      max_radius=train_cfg.frame_affine_max_radius)
  params = jax.tree_util.tree_map(lambda x: x, params)  # New dict tree; leaves shared.
  params['bijection']['frame_affine']['table'] = jnp.asarray(affines)
  info['table'] = np.round(affines, 5).tolist()
  return params, info


def motion_labels(data: sampler.TrainData, train_cfg) -> np.ndarray:
  """[N, H, W] labels for the motion-depth prior (global_motion.motion_labels) from the adjacent
  cycle-consistent flows. Deterministic, like `init_frame_affine`."""
  n, h, w = data.frames.shape[:3]
  if n < 2:
    return np.full((n, h, w), -1.0, np.float32)
  flows, valid = _adjacent_forward(data)
  affines, _ = global_motion.fit_pair_motions(
      flows, valid, num_points=train_cfg.motion_fit_points,
      num_hypotheses=train_cfg.motion_fit_hypotheses, inlier_px=train_cfg.motion_fit_inlier_px)
  return global_motion.motion_labels(flows, valid, affines, train_cfg.motion_threshold_px)


def _inside(px: jax.Array, video: render.VideoShape) -> jax.Array:
  return ((px[..., 0] >= 0) & (px[..., 0] <= video.width - 1)
          & (px[..., 1] >= 0) & (px[..., 1] <= video.height - 1))


def compute_losses(model: model_lib.OmniMotion, params, batch: sampler.Batch, key: jax.Array,
                   video: render.VideoShape, cfg: LossConfig, num_chunks: int = 1,
                   motion_labels: jax.Array | None = None) -> dict[str, jax.Array]:
  """All loss terms (unweighted) for one batch (paper Sec. 4; reference
  `trainer.py`, compute_all_losses).

  num_chunks > 1 maps the rays in that many rematerialised chunks (render.remat_chunks): the same
  losses with less memory and one more forward pass. motion_labels [B*R] (1 / 0 / -1 per source
  point, see sampler.TrainData) adds the 'motion_depth' prior term.
  """
  b, r = batch.weights.shape
  mcfg = model.config
  src = jnp.repeat(batch.src, r)
  tgt = jnp.repeat(batch.tgt, r)
  out = render.map_pixels(model, params, batch.px_src.reshape(-1, 2), src, tgt, video, key=key,
                         num_chunks=num_chunks)
  pred = out['px_mean']
  target = batch.px_tgt.reshape(-1, 2)
  weights = batch.weights.reshape(-1)
  gt_rgb = batch.rgb_src.reshape(-1, 3)
  in_image = _inside(pred, video)  # The flow loss masks on the predicted location.
  rgb_mask = _inside(batch.px_src.reshape(-1, 2), video)
  z_tgt = out['local_tgt'][..., 2]
  in_range = (z_tgt >= mcfg.min_depth) & (z_tgt <= mcfg.max_depth)
  drop = cfg.drop_max_error
  terms = {
      'flow': losses.flow_loss(pred, target, weights, in_image, drop_max=drop),
      'rgb': losses.photometric_loss(out['rgb'], gt_rgb, rgb_mask),
      'rgb_grad': losses.rgb_grad_loss(out['rgb'], gt_rgb, rgb_mask, drop_max=drop),
      'flow_grad': losses.flow_grad_loss(pred, target, weights, in_image, drop_max=drop),
      'depth_range': losses.depth_range_loss(z_tgt, mcfg.min_depth, mcfg.max_depth),
      'distortion': losses.distortion_loss(out['weights'] * in_range, out['z']),
  }
  # Smoothness: the first fraction of each pair's rays, all samples, mapped to frames i-1, i+1.
  # The canonical samples of the main pass are reused instead of mapping them again.
  s = max(1, int(r * cfg.smooth_points_fraction))
  k = mcfg.num_samples
  y = out['canonical'].reshape(b, r, k, 3)[:, :s]
  x = out['local_src'].reshape(b, r, k, 3)[:, :s]
  n = video.num_frames
  t_prev = model_lib.frame_times(jnp.clip(batch.src - 1, 0, n - 1), n)[:, None, None, :]
  t_next = model_lib.frame_times(jnp.clip(batch.src + 1, 0, n - 1), n)[:, None, None, :]
  # Both neighbours in one pass: fewer, larger matmuls.
  to_local = lambda y, t: model.apply({'params': params}, y, t, method=model_lib.OmniMotion.to_local)
  if num_chunks == 1:
    x_prev, x_next = to_local(jnp.stack([y, y]), jnp.stack([t_prev, t_next]))
  else:  # Per-ray rows (times broadcast to every ray), so that they split into chunks.
    t = jnp.broadcast_to(jnp.stack([t_prev, t_next]), (2, b, s, 1, 1))
    x_both = render.remat_chunks(to_local, num_chunks, jnp.stack([y, y]).reshape(2 * b * s, k, 3),
                                 t.reshape(2 * b * s, 1, 1))
    x_prev, x_next = x_both.reshape(2, b, s, k, 3)
  has_both = (batch.src >= 1) & (batch.src <= n - 2)
  terms['smooth'] = losses.smoothness_loss(
      x_prev.reshape(b * s, k, 3), x.reshape(b * s, k, 3), x_next.reshape(b * s, k, 3),
      jnp.repeat(has_both, s), drop_max=drop)
  if motion_labels is not None:
    depth = jnp.sum(out['weights'] * out['z'], axis=-1)
    target = jnp.where(motion_labels > 0.5, cfg.motion_depth_near, cfg.motion_depth_far)
    known = motion_labels >= 0
    terms['motion_depth'] = (jnp.sum(jnp.abs(depth - target) * known)
                             / jnp.maximum(jnp.sum(known), 1))
  terms['_in_image_frac'] = jnp.mean(in_image)
  return terms


def _tree_all_finite(tree) -> jax.Array:
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)]))


def make_train_step(model: model_lib.OmniMotion, tx: optax.GradientTransformation,
                    video: render.VideoShape, samp_cfg: sampler.SamplerConfig,
                    loss_cfg: LossConfig, hard_mining_start: int, schedules=None,
                    remat_chunks: int = 1):
  """Builds the pure `train_step(state, data, root_key) -> (state, metrics)`.

  remat_chunks: see `compute_losses` (num_chunks); config.train.remat_chunks.
  """

  def train_step(state: TrainState, data: sampler.TrainData, root_key: jax.Array):
    key = jax.random.fold_in(root_key, state.step)
    k_batch, k_strat = jax.random.split(key)
    hard = state.step >= hard_mining_start
    batch = sampler.sample_batch(k_batch, data, state.step, samp_cfg, state.error_map,
                                 state.frame_error, hard)
    weights = loss_cfg.weights(state.step)
    labels = None
    if data.motion_labels is not None:  # Static: part of the data's pytree structure.
      px = jnp.round(batch.px_src).astype(jnp.int32)
      x = jnp.clip(px[..., 0], 0, video.width - 1)
      y = jnp.clip(px[..., 1], 0, video.height - 1)
      labels = data.motion_labels[batch.src[:, None], y, x].reshape(-1)

    def loss_fn(params):
      terms = compute_losses(model, params, batch, k_strat, video, loss_cfg, remat_chunks,
                             labels)
      total = losses.total_loss({k: v for k, v in terms.items() if not k.startswith('_')}, weights)
      return total, terms

    (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    finite = jnp.isfinite(loss) & _tree_all_finite(grads)
    # Zero non-finite gradients before the update so no NaN enters the optimiser state; the
    # result is then discarded anyway when the step is skipped.
    safe_grads = jax.tree_util.tree_map(lambda g: jnp.where(finite, g, 0.0), grads)
    updates, opt_state = tx.update(safe_grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    keep = lambda new, old: jax.tree_util.tree_map(lambda a, b: jnp.where(finite, a, b), new, old)
    new_state = state.replace(
        step=state.step + 1, params=keep(params, state.params),
        opt_state=keep(opt_state, state.opt_state),
        num_skipped=state.num_skipped + (~finite).astype(jnp.int32))
    metrics = {f'loss/{k}': v for k, v in terms.items() if not k.startswith('_')}
    metrics.update({
        'loss': loss, 'grad_norm': optax.tree.norm(grads), 'finite': finite,
        'in_image_frac': terms['_in_image_frac'], 'max_gap': batch.max_gap,
        'valid_weight_frac': jnp.mean(batch.weights > 0), 'hard_mining': hard,
        'num_skipped': new_state.num_skipped,
    })
    if schedules:
      metrics.update({f'lr/{k}': s(state.step) for k, s in schedules.items()})
    return new_state, metrics

  return train_step


def make_multi_step(train_step, num_steps: int):
  """`num_steps` train steps in one compiled call (lax.scan); returns the last step's metrics."""
  if num_steps == 1:
    return train_step

  def multi_step(state, data, root_key):
    def body(state, _):
      return train_step(state, data, root_key)

    state, metrics = jax.lax.scan(body, state, None, length=num_steps)
    return state, jax.tree_util.tree_map(lambda m: m[-1], metrics)

  return multi_step


# ------------------------------------------------------------------------------------------------
# The loop: resume, dispatch, hard-mining refresh, logging, checkpoints, signals.

METRICS_FILE = 'metrics.jsonl'
CHECKPOINT_DIR = 'checkpoints'
SUMMARY_FILE = 'train.json'
FRAME_AFFINE_FILE = 'frame_affine.json'  # The fitted initial per-frame affines (if any).


def validate_schedule(train_cfg: ml_collections.ConfigDict) -> None:
  """Every event step must fall on a dispatch boundary (so resumed runs replay exactly)."""
  k = train_cfg.steps_per_dispatch
  for name in ('log_every', 'checkpoint_every', 'hard_mining_start', 'hard_mining_every'):
    if train_cfg[name] % k:
      raise UserInputError(f'train.{name}={train_cfg[name]} must be a multiple of '
                           f'train.steps_per_dispatch={k}.')
  if train_cfg.num_points < 2 or train_cfg.num_pairs < 1:
    raise UserInputError('train.num_pairs must be >= 1 and train.num_points >= 2.')
  rays = train_cfg.num_pairs * train_cfg.num_points
  smooth_rays = 2 * train_cfg.num_pairs * max(1, int(train_cfg.num_points
                                                     * train_cfg.smooth_points_fraction))
  if train_cfg.remat_chunks < 1 or rays % train_cfg.remat_chunks or (
      smooth_rays % train_cfg.remat_chunks):
    raise UserInputError(f'train.remat_chunks={train_cfg.remat_chunks} must divide both the '
                         f'{rays} rays and the {smooth_rays} smoothness rays of a step.')
  if train_cfg.frame_affine_init not in ('identity', 'flow'):
    raise UserInputError(f'train.frame_affine_init={train_cfg.frame_affine_init!r}: use '
                         "'identity' or 'flow'.")


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
  lines = [l for l in path.read_text().splitlines() if l and json.loads(l)['step'] <= step]
  path.write_text(''.join(l + '\n' for l in lines))


def _to_python(metrics: dict) -> dict:
  return {k: (v.item() if hasattr(v, 'item') else v) for k, v in jax.device_get(metrics).items()}


@functools.lru_cache(maxsize=4)
def compiled_train_steps(model_cfg: model_lib.ModelConfig, video: render.VideoShape,
                         samp_cfg: sampler.SamplerConfig, loss_cfg: LossConfig,
                         opt_cfg: OptimizerConfig, hard_mining_start: int,
                         steps_per_dispatch: int, remat_chunks: int = 1):
  """(model, tx, multi-step fn, single-step fn), jitted with the state donated.

  Cached per process on the (hashable) explicit configs, so that several runs of the same setting
  in one process (resume, evaluation suites, tests) compile the step once.
  """
  model = model_lib.OmniMotion(model_cfg)
  tx = make_optimizer(opt_cfg)
  train_step = make_train_step(model, tx, video, samp_cfg, loss_cfg, hard_mining_start,
                               lr_schedules(opt_cfg), remat_chunks)
  multi = jax.jit(make_multi_step(train_step, steps_per_dispatch), donate_argnums=0)
  single = jax.jit(train_step, donate_argnums=0) if steps_per_dispatch > 1 else multi
  return model, tx, multi, single


@functools.lru_cache(maxsize=4)
def compiled_error_mapper(model_cfg: model_lib.ModelConfig, video: render.VideoShape):
  return track.make_mapper(model_lib.OmniMotion(model_cfg), video, occlusion_margin=0.0,
                           with_occlusion=False)


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


def check_resumable(config: ml_collections.ConfigDict, workdir: Path) -> None:
  """Raises UserInputError if workdir holds checkpoints of another model or training config.

  Resuming them would continue (or, if finished, silently reuse) a run with other settings.
  pipeline.train_stage moves such checkpoints aside before calling `fit`; this guards direct
  callers of `fit`.
  """
  saved = checkpoint.load_saved_config(workdir)
  ckpt = workdir / CHECKPOINT_DIR
  if saved is None or not (ckpt.is_dir() and any(ckpt.iterdir())):
    return
  # Compare as saved (json round trip: tuples become lists).
  now = json.loads(json.dumps(config.to_dict(), sort_keys=True, default=str))
  old, new = flatten_dict(_training_fields(saved)), flatten_dict(_training_fields(now))
  changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
  if changed:
    shown = ', '.join(f'{k}: {old.get(k)!r} -> {new.get(k)!r}' for k in changed[:5])
    more = f' and {len(changed) - 5} more' if len(changed) > 5 else ''
    raise UserInputError(
        f'{ckpt} holds a run with another model or training config ({shown}{more}). Use a new '
        'workdir, or train through `omnimotion-jax train`, which moves such checkpoints aside.')


def fit(config: ml_collections.ConfigDict, workdir: str | Path, data: sampler.TrainData, *,
        flows_adjacent: np.ndarray | None = None, progress: bool = True,
        stop_at: int | None = None, on_checkpoint=None) -> TrainState:
  """Optimises the model for `config.train.num_steps`, resuming from `workdir` if possible.

  Args:
    config: the full config.
    workdir: run folder; holds checkpoints/, config.json, metrics.jsonl, train.json.
    data: the video's TrainData (numpy or jax arrays).
    flows_adjacent: [N, H, W, 2] input adjacent flows, for hard-mining error maps (defaults to
      the stored pairs listed in data.adjacent_pair).
    progress: show a progress bar.
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
  model_cfg = model_lib.model_config(config.model, num_frames=n)
  model, tx, multi, single = compiled_train_steps(
      model_cfg, video, sampler_config(tc), loss_config(tc), optimizer_config(tc),
      tc.hard_mining_start, tc.steps_per_dispatch, tc.remat_chunks)
  init_key, loop_key = jax.random.split(jax.random.PRNGKey(config.seed))
  if flows_adjacent is None:
    flows_adjacent = np.asarray(data.flows)[np.asarray(data.adjacent_pair)]
  state = create_train_state(model, tx, init_key, video)
  if model_cfg.bijection.frame_affine and tc.frame_affine_init == 'flow':
    params, info = init_frame_affine(state.params, data, tc)
    (workdir / FRAME_AFFINE_FILE).write_text(json.dumps(info, indent=1))
    state = state.replace(params=params, opt_state=tx.init(params))
  if tc.w_motion_depth > 0:
    data = dataclasses.replace(data, motion_labels=motion_labels(data, tc))
  data = jax.device_put(data)

  mngr = checkpoint.manager(workdir / CHECKPOINT_DIR, tc.checkpoint_keep)
  restored = checkpoint.restore_latest(mngr, state)
  if restored is not None:
    state = restored
  checkpoint.save_config(workdir, config)
  start_step = int(state.step)
  metrics_path = workdir / METRICS_FILE
  _trim_metrics(metrics_path, start_step)

  step = start_step
  t_start = time.time()
  bar = tqdm(total=tc.num_steps, initial=step, desc='train', disable=not progress,
             dynamic_ncols=True)
  with _StopFlag() as flag, metrics_path.open('a') as log:
    while step < tc.num_steps and not flag.stop and (stop_at is None or step < stop_at):
      if (tc.hard_mining_fraction > 0 and step >= tc.hard_mining_start
          and (step - tc.hard_mining_start) % tc.hard_mining_every == 0):
        mapper = compiled_error_mapper(model_cfg, video)
        error_map, frame_error = track.adjacent_error_maps(
            mapper, state.params, flows_adjacent, video, stride=tc.hard_mining_stride,
            chunk_size=config.track.chunk_size, blur_ksize=tc.error_map_blur_ksize)
        state = state.replace(error_map=jnp.asarray(error_map), frame_error=jnp.asarray(frame_error))
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
  (workdir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
  if flag.stop and step < tc.num_steps:
    raise TrainingInterrupted(
        f'training stopped by a signal at step {step}/{tc.num_steps}; checkpoint saved in '
        f'{workdir / CHECKPOINT_DIR}. Run the same command again to resume.')
  return state
