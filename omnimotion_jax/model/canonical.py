"""The canonical volume F_theta: colour and density at canonical 3D points (paper Sec. 3.1;
reference `networks/mfn.py` and `trainer.py`, whose contraction comes first)."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from omnimotion_jax.model.gabor import GaborNet, GaborNetConfig
from omnimotion_jax.model.geometry import contract


@dataclasses.dataclass(frozen=True)
class CanonicalConfig:
  """Hyper-parameters of the canonical field (configs/default.py, model.canonical)."""
  hidden: int = 512
  num_layers: int = 3
  alpha: float = 3.0
  input_scale: float = 256.0
  weight_scale: float = 1.0
  density_bias: float = -1.0


class CanonicalField(nn.Module):
  """Canonical points [..., 3] -> (rgb [..., 3] in [0, 1], density sigma [..., 1] >= 0).

  Points are contracted into the radius-2 ball first, so the field is bounded wherever the
  bijections send samples.
  """
  config: CanonicalConfig

  @nn.compact
  def __call__(self, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    cfg = self.config
    net = GaborNet(GaborNetConfig(in_size=3, hidden=cfg.hidden, num_layers=cfg.num_layers,
                                  out_size=4, alpha=cfg.alpha, input_scale=cfg.input_scale,
                                  weight_scale=cfg.weight_scale), name='mfn')
    raw = net(contract(y))
    return jax.nn.sigmoid(raw[..., :3]), jax.nn.softplus(raw[..., 3:] + cfg.density_bias)
