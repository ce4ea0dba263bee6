"""`make demo`: configs/cpu_quality.py with fewer steps, so the whole demo fits in 15 minutes on
a 2-core CPU (preprocess, train, track, baselines, videos, report): about 7 minutes, 6.4 of them
training (32 frames, 128x160).

Command:  make demo   (= omnimotion-jax demo --workdir out/demo --config cpu_demo)
"""

from configs import cpu_quality

DEMO_STEPS = 5000


def get_config():
  return cpu_quality.get_config(num_steps=DEMO_STEPS)
