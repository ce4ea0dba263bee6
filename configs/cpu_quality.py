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

# Steps of this setting; every step-based schedule is scaled by steps / REFERENCE_STEPS.
# At this budget quality grows with the number of steps (synthetic-v1 mean AJ 58.8 at 3.5k, 65.3
# at 7k, 66.5 at 8k against chained flow's 55.8; benchmarks/QUALITY.md, sessions 5-7), so the
# batch is small and the steps many. 8k steps: about 11 min for a 48-frame 256x256 video on the
# 2-core CPU (scaled from 9.5 min at 7k).
DEFAULT_STEPS = 8000
REFERENCE_STEPS = 100_000


def get_config(num_steps: int = DEFAULT_STEPS):
  scale = num_steps / REFERENCE_STEPS
  config = default.get_config()
  model = config.model
  model.num_samples = 12
  model.time_net.hidden = 64
  model.canonical.hidden = 64
  # Lower Gabor frequency scale than the reference's 256: with a 64-wide field and a few thousand
  # steps, 256 gave a texture-like canonical density (noisy pseudo-depth). Measured on
  # synthetic-mini videos 1-2 at 1.5k steps: mean AJ 44.4 -> 53.7 (benchmarks/QUALITY.md).
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
  train.num_steps = num_steps
  # 4 pairs x 64 points: a step costs 107 ms instead of 191 ms with 8 pairs, and at this budget
  # more steps are worth more than a larger batch (benchmarks/QUALITY.md, session 5).
  train.num_pairs = 4
  train.num_points = 64
  train.remat_chunks = 1  # Small batches: activations fit in cache anyway; no extra forward.
  train.lr_time_net = 3e-3
  train.lr_bijection = 3e-4
  train.lr_canonical = 1e-3
  train.lr_decay_every = int(20_000 * scale)
  train.max_gap_grow_every = max(1, int(2000 * scale))
  train.hard_mining_start = int(20_000 * scale)
  train.hard_mining_every = int(20_000 * scale)
  train.hard_mining_stride = 4  # error maps on every 4th px (then blurred): cheap on 256^2 videos
  train.w_rgb_ramp_steps = int(5000 * scale)
  train.w_flow_grad_ramp_steps = int(500_000 * scale)
  train.w_distortion_start = int(40_000 * scale)
  train.w_distortion_ramp_steps = int(2000 * scale)
  # Motion-depth prior for the first half of training: pixels whose adjacent flow departs from
  # the dominant (camera) motion start in front (depth 0.5), the rest behind (1.5). At this budget
  # the depth layering that independent motion needs is otherwise not found: with it, three
  # synthetic-v1 fast videos went 35.6 / 40.2 / 31.7 -> 59.1 / 49.5 / 43.6 AJ (QUALITY.md, s4).
  train.w_motion_depth = 1.0
  train.motion_depth_steps = num_steps // 2
  train.steps_per_dispatch = 10
  train.log_every = 50
  train.checkpoint_every = 500
  # Forward-backward occlusion check at 3 model px: +1.3 and +2.5 AJ when re-tracking two trained
  # synthetic-mini models (most missed occlusions there are points that left the view and were
  # mapped onto other content; the depth test cannot see those).
  config.track.cycle_threshold = 3.0
  config.track.chunk_size = 4096
  return config
