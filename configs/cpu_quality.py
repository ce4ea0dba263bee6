"""CPU setting that still shows OmniMotion's advantage over chained flow (2-core CPU, minutes).

Smaller networks, fewer samples and smaller batches than the reference, 8k steps instead of
100k, with learning rates raised and every step-based schedule (LR decay, loss ramps, distortion
start, max-gap growth, hard mining) compressed by the same factor, so the run goes through the
reference's phases in order. Three settings that are not in the reference are on, with their
measured effects in benchmarks/QUALITY.md: the long-gap agreement check, the motion-depth prior
and the forward-backward occlusion check. Everything else (losses, thresholds, sampling rules) is
the reference default.

Command:  omnimotion-jax run VIDEO --workdir W --config cpu_quality
Quality:  .venv/bin/python benchmarks/quality.py --config cpu_quality --workers 2  (benchmarks/QUALITY.md)
"""

from configs import default

# At this budget quality grows with the number of steps (benchmarks/QUALITY.md, sessions 5-7), so
# the batch is small and the steps many.
DEFAULT_STEPS = 8000
# (section of config.train, field): the step-based schedules.
SCALED_SCHEDULES = (('optim', 'lr_decay_every'), ('sampling', 'max_gap_grow_every'),
                    ('hard_mining', 'start'), ('hard_mining', 'every'),
                    ('loss', 'w_rgb_ramp_steps'), ('loss', 'w_flow_grad_ramp_steps'),
                    ('loss', 'w_distortion_start'), ('loss', 'w_distortion_ramp_steps'))


def get_config(num_steps: int = DEFAULT_STEPS):
  config = default.get_config()
  model = config.model
  model.num_samples = 12
  model.time_net.hidden = 64
  model.canonical.hidden = 64
  # Lower Gabor frequency scale than the reference's 256: with a 64-wide field and a few thousand
  # steps, 256 gave a texture-like canonical density (noisy pseudo-depth; benchmarks/QUALITY.md).
  model.canonical.input_scale = 64.0
  model.bijection.hidden = (64, 64)
  model.bijection.code_proj_dim = 64
  model.bijection.pos_proj_dim = 64
  model.bijection.use_affine = False

  # Without feature checks, DIS's direct long-gap flow can match a small fast object to the
  # background in both directions (cycle-consistent, 30-70 px wrong); the chain then kept it. On
  # pan-zoom-one-object-fast this made 75 % of the object's gap-4-7 supervision wrong (median
  # 30 px); with the agreement check its median error is 1 px (benchmarks/QUALITY.md, session 3).
  config.data.direct_agreement_px = 3.0

  train = config.train
  # Every step-based schedule, scaled from its reference value by num_steps / 100k.
  scale = num_steps / train.num_steps
  for section, key in SCALED_SCHEDULES:
    train[section][key] = max(1, int(train[section][key] * scale))
  train.num_steps = num_steps
  # 4 pairs x 64 points: at this budget more steps are worth more than a larger batch
  # (benchmarks/QUALITY.md, session 5).
  train.sampling.num_pairs = 4
  train.sampling.num_points = 64
  train.remat_chunks = 1  # Small batches: activations fit in cache anyway; no extra forward.
  train.optim.lr_time_net = 3e-3
  train.optim.lr_bijection = 3e-4
  train.optim.lr_canonical = 1e-3
  train.hard_mining.stride = 4  # error maps on every 4th px (then blurred): cheap on 256^2 videos
  # Motion-depth prior for the first half of training: pixels whose adjacent flow departs from
  # the dominant (camera) motion start in front (depth 0.5), the rest behind (1.5). At this budget
  # the depth layering that independent motion needs is otherwise not found (QUALITY.md, s4).
  train.loss.w_motion_depth = 1.0
  train.loss.motion_depth_steps = num_steps // 2
  train.steps_per_dispatch = 10
  train.log_every = 50
  train.checkpoint_every = 500
  # Forward-backward occlusion check at 3 model px: most missed occlusions are points that left
  # the view and were mapped onto other content, which the depth test cannot see (QUALITY.md).
  config.track.cycle_threshold = 3.0
  config.track.chunk_size = 4096
  return config
