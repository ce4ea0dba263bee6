"""The train state and the pure, jitted train step (paper Sec. 4; reference `trainer.py`).

One pure `train_step(state, data, root_key) -> (state, metrics)`, jitted once with the state
donated. All per-step randomness comes from `fold_in(root_key, state.step)`, and everything that
changes during training (params, optimiser state, hard-mining error maps, the skip counter) lives
in the state, so a resumed run continues bit-identically. Each config section of `config.train`
maps one to one onto a frozen dataclass here or in sampler.py / priors.py.
"""

import dataclasses
import functools

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax

from omnimotion_jax.data.filtering import in_frame
from omnimotion_jax.model import model as model_lib
from omnimotion_jax.model import render
from omnimotion_jax.train import losses
from omnimotion_jax.train import sampler
from omnimotion_jax.train import surface_losses

# Top-level parameter groups, each with its own learning rate: the volume model's three networks,
# and the surface model's bijection and depth surface.
PARAM_GROUPS = ('time_net', 'bijection', 'canonical', 'depth')


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
  """Loss weights and schedule constants (config.train.loss)."""
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
    # Every w_* field but the prior's is an argument of losses.loss_weights.
    schedule = {k: v for k, v in dataclasses.asdict(self).items()
                if k.startswith('w_') and k != 'w_motion_depth'}
    return dict(motion_depth=self.w_motion_depth * decay, **losses.loss_weights(step, **schedule))


@dataclasses.dataclass(frozen=True)
class OptimConfig:
  """Optimiser parameters (config.train.optim)."""
  lr_time_net: float
  lr_bijection: float
  lr_canonical: float
  lr_depth: float
  lr_decay_every: int
  lr_decay_factor: float
  adam_b1: float
  adam_b2: float
  adam_eps: float
  grad_clip_norm: float


def train_configs(train_cfg: ml_collections.ConfigDict, model_kind: str
                  ) -> tuple[sampler.SamplerConfig, LossConfig | surface_losses.SurfaceLossConfig,
                             OptimConfig]:
  """The step's typed configs from config.train's sections: sampling, the losses of the model
  kind (config.model.kind: `loss` for 'volume', `surface_loss` for 'surface') and optim."""
  loss = (surface_losses.SurfaceLossConfig(**train_cfg.surface_loss) if model_kind == 'surface'
          else LossConfig(**train_cfg.loss))
  return sampler.SamplerConfig(**train_cfg.sampling), loss, OptimConfig(**train_cfg.optim)


def lr_schedules(cfg: OptimConfig) -> dict[str, optax.Schedule]:
  """Step-decay (StepLR) schedule per parameter group."""
  base = {'time_net': cfg.lr_time_net, 'bijection': cfg.lr_bijection,
          'canonical': cfg.lr_canonical, 'depth': cfg.lr_depth}
  return {name: optax.exponential_decay(lr, transition_steps=cfg.lr_decay_every,
                                        decay_rate=cfg.lr_decay_factor, staircase=True)
          for name, lr in base.items()}


def param_groups(model) -> tuple[str, ...]:
  """The model's top-level parameter groups (a subset of PARAM_GROUPS)."""
  return ('bijection', 'depth') if model_lib.is_surface(model) else PARAM_GROUPS[:3]


def make_optimizer(cfg: OptimConfig, groups: tuple[str, ...] = PARAM_GROUPS[:3]
                   ) -> optax.GradientTransformation:
  """Adam with one learning-rate schedule per top-level parameter group.

  groups: the model's groups (`param_groups`); only those get an optimiser state, so a volume
  model's state has the layout it had before the surface model existed.
  """
  adam = lambda sched: optax.adam(sched, b1=cfg.adam_b1, b2=cfg.adam_b2,
                                  eps=cfg.adam_eps)
  schedules = lr_schedules(cfg)
  tx = optax.multi_transform({k: adam(schedules[k]) for k in groups},
                             lambda params: {k: k for k in params})
  if cfg.grad_clip_norm > 0:
    # A global norm (the reference's clip, when enabled, was per tensor).
    tx = optax.chain(optax.clip_by_global_norm(cfg.grad_clip_norm), tx)
  return tx


def create_train_state(model, tx: optax.GradientTransformation,
                       key: jax.Array, video: render.VideoShape) -> TrainState:
  params = model_lib.init_params(model, key)
  n, h, w = video.num_frames, video.height, video.width
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                    num_skipped=jnp.zeros((), jnp.int32), error_map=jnp.ones((n, h, w)),
                    frame_error=jnp.ones((n,)))


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
  in_image = in_frame(pred, video.height, video.width)  # Masks on the predicted location.
  rgb_mask = in_frame(batch.px_src.reshape(-1, 2), video.height, video.width)
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


def make_train_step(model, tx: optax.GradientTransformation,
                    samp_cfg: sampler.SamplerConfig, loss_cfg: LossConfig,
                    hard_mining_start: int, schedules=None, remat_chunks: int = 1,
                    axis_name: str | None = None):
  """Builds the pure `train_step(state, data, root_key) -> (state, metrics)`.

  axis_name: data parallelism over a mapped axis of that name (train/parallel.py): each member
  draws its own pairs (its index folded into the key) and the losses and gradients are averaged
  over the axis before the (then identical) update.

  The video's frame count and size come from `data.size` (data, not constants), so one compiled
  step serves any video whose arrays have the compiled shapes, padded ones included.
  remat_chunks: see `compute_losses` (num_chunks); config.train.remat_chunks.
  loss_cfg: LossConfig for the volume model, surface_losses.SurfaceLossConfig for the surface
  model (train_configs picks it by config.model.kind).
  """

  surface = model_lib.is_surface(model)

  def train_step(state: TrainState, data: sampler.TrainData, root_key: jax.Array):
    video = data.video()
    key = jax.random.fold_in(root_key, state.step)
    if axis_name is not None:
      key = jax.random.fold_in(key, jax.lax.axis_index(axis_name))
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
      if surface:
        terms = surface_losses.compute_losses(model, params, batch, video, loss_cfg, labels)
      else:
        terms = compute_losses(model, params, batch, k_strat, video, loss_cfg, remat_chunks,
                               labels)
      total = losses.total_loss({k: v for k, v in terms.items() if not k.startswith('_')}, weights)
      return total, terms

    (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    valid_frac = jnp.mean(batch.weights > 0)
    if axis_name is not None:
      loss, terms, grads, valid_frac = jax.lax.pmean((loss, terms, grads, valid_frac), axis_name)
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
        'valid_weight_frac': valid_frac, 'hard_mining': hard,
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


@functools.lru_cache(maxsize=4)
def compiled_train_steps(model_cfg: model_lib.ModelConfig,
                         samp_cfg: sampler.SamplerConfig, loss_cfg: LossConfig,
                         opt_cfg: OptimConfig, hard_mining_start: int,
                         steps_per_dispatch: int, remat_chunks: int = 1):
  """(model, tx, multi-step fn, single-step fn), jitted with the state donated.

  Cached per process on the (hashable) explicit configs, so that several runs of the same setting
  in one process (resume, evaluation suites, tests) compile the step once per data shape.
  """
  model = model_lib.build(model_cfg)
  tx = make_optimizer(opt_cfg, param_groups(model))
  train_step = make_train_step(model, tx, samp_cfg, loss_cfg, hard_mining_start,
                               lr_schedules(opt_cfg), remat_chunks)
  multi = jax.jit(make_multi_step(train_step, steps_per_dispatch), donate_argnums=0)
  single = jax.jit(train_step, donate_argnums=0) if steps_per_dispatch > 1 else multi
  return model, tx, multi, single
