"""The paper's setting: the reference default without the affine depth layer.

The authors say the released/paper checkpoints used use_affine=False (reference issue #42), with
other, unpublished differences. Everything else equals configs/default.py.

Command (GPU):  omnimotion-jax run VIDEO --workdir W --config configs/paper.py
"""

from configs import default


def get_config():
  config = default.get_config()
  config.model.bijection.use_affine = False
  return config
