"""CPU setting for real footage at 256x256 (TAP-Vid's protocol), 2-core CPU, minutes a video.

The surface model (model.kind='surface', model/surface.py): one point per pixel on a learnable
depth surface per frame, tied to the canonical space by grid-conditioned monotone piecewise-linear
couplings (after Song et al., "Track Everything Everywhere Fast and Robustly", ECCV 2024),
occlusion by a depth test. In 4 minutes a video it tracks better than the paper's volume model
in 14 (cpu_real_volume; the time-to-quality figure in benchmarks/QUALITY.md); 4k steps with
the appearance check take about 9 minutes a video on one core.

Supervision is a union of two witnesses (the paper keeps direct flow where it passes its checks
and adds chained flow): every ordered pair gets direct flow, and a long-gap correspondence is
kept where the direct flow passes its forward-backward check or the chain of adjacent flows is
still valid; where both exist they must land within direct_agreement_px, a radius that grows by
agreement_px_per_frame with the gap, else the point is dropped (filtering.chain_flows). The
sampler then drops a long-gap correspondence whose two ends do not look alike (colour-patch
ZNCC below 0.5, sampler.patch_zncc): it removes about 80 % of the wrong long-gap
correspondences and 17 % of the right ones (benchmarks/supervision.py --appearance). What gets
through is fitted with a robust flow penalty on long-gap pairs (train.surface_loss.flow_robust_px
= 2 px: c log(1 + e / c) instead of L1), so a correspondence that the rest of the video
contradicts pulls less than one it agrees with.

Memory: the exhaustive store holds N(N-1) flows, about N^2 x 0.26 MB at 256x256 (0.26 GB for 32
frames, 2.5 GB for 99). For longer videos use `--set data.pair_plan=banded`.

Command:  omnimotion-jax run VIDEO --workdir W --config cpu_real --set data.resize=256,256
Quality:  .venv/bin/python benchmarks/real_quality.py davis32 --split DIR --config cpu_real
"""

from configs import cpu_real_volume

# benchmarks/QUALITY.md (real video, time to quality).
DEFAULT_STEPS = 4000


def get_config(num_steps: int = DEFAULT_STEPS):
  config = cpu_real_volume.get_config(num_steps)
  config.model.kind = 'surface'
  config.data.single_witness = 'both'
  config.data.agreement_px_per_frame = 0.25
  train = config.train
  # Larger batches than the volume model's 4 x 64 rays: a point costs one bijection pass, not 12.
  train.sampling.num_pairs = 16
  train.sampling.num_points = 256
  train.sampling.appearance_min_zncc = 0.5
  train.optim.lr_bijection = 3e-3
  train.optim.lr_depth = 1e-2
  loss = train.surface_loss
  loss.flow_robust_px = 2.0
  loss.w_motion_depth = 1.0
  loss.motion_depth_steps = num_steps // 2
  return config
