"""The previous real-footage setting (the paper's volume model), kept for comparison with cpu_real.

Until 0.3 this was `cpu_real`; it is the "old design" of the time-to-quality figure in
benchmarks/QUALITY.md. At 8k steps it takes ~14 min a video on one core.

`cpu_quality` (tuned on synthetic videos) with the supervision made strict, because on real video
the long-gap correspondences are the weak part (benchmarks/QUALITY.md, real video):
- every ordered pair gets direct flow (the reference's exhaustive plan), and
- a long-gap correspondence is kept only where two independent witnesses agree: the direct flow
  passes its forward-backward check AND the chain of adjacent flows is still valid AND they land
  within `direct_agreement_px` (filtering.chain_flows, require_agreement). On the dev split that
  cuts correspondences that are > 8 px wrong from 2-35 % (growing with the gap) to < 1 %.
- the tracker's forward-backward occlusion threshold grows with the distance from the query frame
  (the model's own mapping error grows with it; a fixed 3 px calls far visible points occluded).

Memory: the exhaustive store holds N(N-1) flows, about N^2 x 0.26 MB at 256x256 (0.26 GB for 32
frames, 2.5 GB for 99). For longer videos use `--set data.pair_plan=banded`.

Command:  omnimotion-jax run VIDEO --workdir W --config cpu_real_volume --set data.resize=256,256
Quality:  .venv/bin/python benchmarks/real_quality.py davis32 --split DIR --config cpu_real_volume
"""

from configs import cpu_quality


def get_config(num_steps: int = cpu_quality.DEFAULT_STEPS):
  config = cpu_quality.get_config(num_steps)
  config.data.pair_plan = 'exhaustive'
  config.data.require_agreement = True
  config.track.cycle_threshold_per_frame = 0.5
  return config
