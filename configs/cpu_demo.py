"""`make demo`: configs/cpu_quality.py with fewer steps, so the whole demo fits in 15 minutes on
a 2-core CPU (preprocess, train, track, baselines, videos, report) on 32 frames of 128x160;
measured times are in the README.

Command:  make demo   (= omnimotion-jax demo --workdir out/demo --config cpu_demo)
"""

from configs import cpu_quality

DEMO_STEPS = 5000


def get_config():
  return cpu_quality.get_config(num_steps=DEMO_STEPS)
