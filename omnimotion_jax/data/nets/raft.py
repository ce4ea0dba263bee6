"""RAFT optical flow (Teed & Deng, ECCV 2020) in Flax, run as the official code runs it in test mode.

Two models (MODELS): 'raft', the standard model of the release's raft-things.pth (BasicEncoder,
SepConvGRU, convex upsampling, correlation radius 4), and 'raft_small' (raft-small.pth:
SmallEncoder, ConvGRU, bilinear x8 upsampling, radius 3, as official core/raft.py sets them).
Module and parameter names follow the official code (fnet, cnet, update_block, layer1_0, mask_0,
...; an official `layer1.0` is `layer1_0` here), so raft_convert.py maps every official
state-dict key mechanically.

Conventions:
  * Images: float32 [H, W, 3] RGB in [0, 255], H and W multiples of 8 (raft_infer.py pads as the
    official InputPadder does), normalised inside as 2 x / 255 - 1 (official RAFT.forward).
  * Features at 1/8 resolution: [h, w, C] with (h, w) = (H / 8, W / 8).
  * Flows: (dx, dy) px, channel-last, from image 1 to image 2. The low-resolution flow (the
    official `coords1 - coords0`) is in 1/8-resolution px [h, w, 2]; the upsampled flow is in
    image px [H, W, 2]. Pixel centres are at integer coordinates, x is the column.
  * Everything here works on ONE pair (unbatched arrays); raft_infer.py vmaps it over pairs.
    The parameter-free operations (correlation pyramid and lookup, upsampling) are in
    raft_ops.py.

Memory: the all-pairs correlation volume of one pair holds (h w)^2 float32 at level 0, plus about
a third more for levels 1-3 (average-pooled 2x, 4x, 8x): at 256x256, 1024^2 x 4 B = 4.2 MB
(4.0 MiB; 5.6 MB with levels 1-3); at 854x480 (padded to 856x480, h w = 107 x 60 = 6420),
6420^2 x 4 B = 165 MB (157 MiB; 218 MB with levels 1-3). XLA's analysis of the compiled pair
function gives about twice the pyramid per pair at 854x480 (benchmarks/README.md, RAFT).

Where the official code and torchvision's port differ, this follows the official code (the
OmniMotion reference ran it): normalisation inside the model, the `flow_init` warm start, the
InputPadder. Both give the same flow for the same normalised input and weights (the parity test
runs torchvision).
"""

import dataclasses
import functools

import flax.linen as nn
from flax import traverse_util
import jax
import jax.numpy as jnp

from omnimotion_jax.data.nets import raft_ops

NORM_EPS = 1e-5  # torch InstanceNorm2d / BatchNorm2d default.
MASK_SCALE = 0.25  # Official BasicUpdateBlock: `.25 * self.mask(net)` ("balance gradients").


@dataclasses.dataclass(frozen=True)
class RaftConfig:
  """Architecture of one RAFT model (official core/raft.py, RAFT.__init__).

  Attributes:
    small: SmallEncoder / SmallUpdateBlock (True) or BasicEncoder / BasicUpdateBlock.
    feature_dim: fnet output channels.
    hidden_dim: GRU state channels (first part of cnet's output, through tanh).
    context_dim: context channels (second part, through relu).
    corr_levels: levels of the correlation pyramid.
    corr_radius: lookup radius r (px at each level): (2r + 1)^2 samples per level.
    precision: conv precision (None: JAX's default, TF32 on recent NVIDIA GPUs like PyTorch's
      cuDNN default); the correlation volume is always computed at full float32 precision.
  """
  small: bool
  feature_dim: int
  hidden_dim: int
  context_dim: int
  corr_levels: int = 4
  corr_radius: int = 4
  precision: str | None = None

  @property
  def corr_channels(self) -> int:
    return self.corr_levels * (2 * self.corr_radius + 1) ** 2


MODELS = {
    'raft': RaftConfig(small=False, feature_dim=256, hidden_dim=128, context_dim=128,
                       corr_radius=4),
    'raft_small': RaftConfig(small=True, feature_dim=128, hidden_dim=96, context_dim=64,
                             corr_radius=3),
}


def _conv(features: int, kernel, stride: int = 1, name: str | None = None,
          precision: str | None = None) -> nn.Conv:
  """A PyTorch-style Conv2d with bias and symmetric zero padding (k - 1) / 2 per side."""
  kernel = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
  padding = [((k - 1) // 2, (k - 1) // 2) for k in kernel]
  return nn.Conv(features, kernel, strides=stride, padding=padding, name=name,
                 precision=precision)


def _instance_norm(x: jax.Array) -> jax.Array:
  """torch InstanceNorm2d (no affine): per channel over the spatial axes, biased variance."""
  mean = x.mean(axis=(-3, -2), keepdims=True)
  var = jnp.square(x - mean).mean(axis=(-3, -2), keepdims=True)
  return (x - mean) * jax.lax.rsqrt(var + NORM_EPS)


def _norm(kind: str, name: str):
  """The encoders' norm_fn: 'instance', 'batch' (inference statistics) or 'none'."""
  if kind == 'batch':
    return nn.BatchNorm(use_running_average=True, epsilon=NORM_EPS, name=name)
  return _instance_norm if kind == 'instance' else (lambda x: x)


class Block(nn.Module):
  """Official core/extractor.py ResidualBlock (3x3, 3x3 convs) or BottleneckBlock (1x1, 3x3, 1x1
  at a quarter width), each conv with norm and ReLU, the stride on the first 3x3, plus a 1x1
  projection of the input when strided."""
  planes: int
  norm: str
  stride: int = 1
  bottleneck: bool = False
  precision: str | None = None

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(_conv, precision=self.precision)
    quarter = self.planes // 4
    layers = (((quarter, 1, 1), (quarter, 3, self.stride), (self.planes, 1, 1)) if self.bottleneck
              else ((self.planes, 3, self.stride), (self.planes, 3, 1)))
    y = x
    for k, (width, kernel, stride) in enumerate(layers, 1):
      y = nn.relu(_norm(self.norm, f'norm{k}')(conv(width, kernel, stride, f'conv{k}')(y)))
    if self.stride != 1:
      x = _norm(self.norm, 'downsample_1')(conv(self.planes, 1, self.stride, 'downsample_0')(x))
    return nn.relu(x + y)


class Encoder(nn.Module):
  """BasicEncoder (residual blocks, widths 64-96-128) or SmallEncoder (bottlenecks, 32-64-96).

  [H, W, 3] normalised image -> [H / 8, W / 8, output_dim] (official core/extractor.py).
  """
  output_dim: int
  norm: str
  small: bool
  precision: str | None = None

  @nn.compact
  def __call__(self, x):
    widths = (32, 64, 96) if self.small else (64, 96, 128)
    x = _conv(widths[0], 7, 2, 'conv1', self.precision)(x)
    x = nn.relu(_norm(self.norm, 'norm1')(x))
    for layer, (width, stride) in enumerate(zip(widths, (1, 2, 2)), 1):
      for k in range(2):
        x = Block(width, self.norm, stride if k == 0 else 1, self.small, self.precision,
                  name=f'layer{layer}_{k}')(x)
    return _conv(self.output_dim, 1, 1, 'conv2', self.precision)(x)


class MotionEncoder(nn.Module):
  """Correlation and flow features, with the flow appended (official BasicMotionEncoder /
  SmallMotionEncoder): [h, w, 128] (standard) or [h, w, 82] (small)."""
  small: bool
  precision: str | None = None

  @nn.compact
  def __call__(self, flow, corr):
    conv = functools.partial(_conv, precision=self.precision)
    corr_widths, flow_widths, out_dim = ((96,), (64, 32), 80) if self.small else (
        (256, 192), (128, 64), 126)
    for k, width in enumerate(corr_widths, 1):
      corr = nn.relu(conv(width, 1 if k == 1 else 3, name=f'convc{k}')(corr))
    features = flow
    for k, width in enumerate(flow_widths, 1):
      features = nn.relu(conv(width, 7 if k == 1 else 3, name=f'convf{k}')(features))
    out = nn.relu(conv(out_dim, 3, name='conv')(jnp.concatenate([corr, features], -1)))
    return jnp.concatenate([out, flow], -1)


class ConvGRU(nn.Module):
  """Convolutional GRU: one 3x3 pass (small), or the SepConvGRU's 1x5 then 5x1 passes
  (standard), official core/update.py."""
  hidden_dim: int
  separable: bool
  precision: str | None = None

  @nn.compact
  def __call__(self, h, x):
    conv = functools.partial(_conv, self.hidden_dim, precision=self.precision)
    passes = (((1, 5), '1'), ((5, 1), '2')) if self.separable else (((3, 3), ''),)
    for kernel, suffix in passes:
      hx = jnp.concatenate([h, x], -1)
      z = nn.sigmoid(conv(kernel, name=f'convz{suffix}')(hx))
      r = nn.sigmoid(conv(kernel, name=f'convr{suffix}')(hx))
      q = jnp.tanh(conv(kernel, name=f'convq{suffix}')(jnp.concatenate([r * h, x], -1)))
      h = (1 - z) * h + z * q
    return h


class FlowHead(nn.Module):
  """3x3 conv, ReLU, 3x3 conv to the (dx, dy) update (official FlowHead)."""
  hidden_dim: int
  precision: str | None = None

  @nn.compact
  def __call__(self, x):
    x = nn.relu(_conv(self.hidden_dim, 3, name='conv1', precision=self.precision)(x))
    return _conv(2, 3, name='conv2', precision=self.precision)(x)


class UpdateBlock(nn.Module):
  """One refinement step, official BasicUpdateBlock / SmallUpdateBlock."""
  config: RaftConfig

  def setup(self):
    c = self.config
    self.encoder = MotionEncoder(c.small, c.precision)
    self.gru = ConvGRU(c.hidden_dim, separable=not c.small, precision=c.precision)
    self.flow_head = FlowHead(128 if c.small else 256, c.precision)
    if not c.small:
      self.mask_0 = _conv(256, 3, precision=c.precision)
      self.mask_2 = _conv(raft_ops.UPSAMPLE * raft_ops.UPSAMPLE * 9, 1, precision=c.precision)

  def __call__(self, net, inp, corr, flow):
    """(net [h, w, hidden], inp [h, w, context], corr [h, w, corr_channels], flow [h, w, 2])
    -> (new net, delta flow [h, w, 2])."""
    x = jnp.concatenate([inp, self.encoder(flow, corr)], -1)
    net = self.gru(net, x)
    return net, self.flow_head(net)

  def mask(self, net):
    """Convex-upsampling logits [h, w, 576] of the standard model, already scaled by 0.25."""
    return MASK_SCALE * self.mask_2(nn.relu(self.mask_0(net)))


def normalize(image: jax.Array) -> jax.Array:
  """RGB in [0, 255] -> [-1, 1], as official RAFT.forward: 2 (x / 255) - 1."""
  return 2 * (image / 255.0) - 1.0


class RAFT(nn.Module):
  """fnet, cnet and the update block; the loop around them is `refine` (pure function)."""
  config: RaftConfig

  def setup(self):
    c = self.config
    self.fnet = Encoder(c.feature_dim, 'instance', c.small, c.precision)
    self.cnet = Encoder(c.hidden_dim + c.context_dim, 'none' if c.small else 'batch', c.small,
                        c.precision)
    self.update_block = UpdateBlock(c)

  def features(self, image):
    """[H, W, 3] in [0, 255] -> fnet features [h, w, feature_dim]."""
    return self.fnet(normalize(image))

  def context(self, image):
    """[H, W, 3] in [0, 255] -> (initial GRU state tanh [h, w, hidden], context relu [h, w, C])."""
    out = self.cnet(normalize(image))
    net, inp = jnp.split(out, [self.config.hidden_dim], axis=-1)
    return jnp.tanh(net), nn.relu(inp)

  def update(self, net, inp, corr, flow):
    return self.update_block(net, inp, corr, flow)

  def upsample_mask(self, net):
    return self.update_block.mask(net)

  def init_all(self, image):
    """Touches every submodule (for `init_variables`)."""
    c = self.config
    fmap = self.features(image)
    net, inp = self.context(image)
    corr = jnp.zeros(fmap.shape[:2] + (c.corr_channels,))
    net, delta = self.update(net, inp, corr, jnp.zeros(fmap.shape[:2] + (2,)))
    return delta if c.small else self.upsample_mask(net)


def init_variables(config: RaftConfig, key: jax.Array, size: tuple[int, int] = (64, 64)) -> dict:
  """Random variables {'params', and 'batch_stats' for the standard model} of a model."""
  return RAFT(config).init(key, jnp.zeros(tuple(size) + (3,)), method=RAFT.init_all)


@functools.lru_cache(maxsize=2)
def variable_shapes(kind: str) -> dict[str, tuple[int, ...]]:
  """{'params/fnet/conv1/kernel': shape, ...}: the flat keys of a MODELS[kind] weights file."""
  tree = jax.eval_shape(lambda: init_variables(MODELS[kind], jax.random.key(0)))
  return {'/'.join(path): tuple(leaf.shape)
          for path, leaf in traverse_util.flatten_dict(tree).items()}


def refine(model: RAFT, variables: dict, fmap1: jax.Array, fmap2: jax.Array, net: jax.Array,
           inp: jax.Array, iters: int, flow_init: jax.Array | None = None,
           all_iters: bool = False) -> tuple[jax.Array, jax.Array]:
  """The recurrent refinement of one pair (official RAFT.forward after the encoders).

  The iterations run in one lax.scan, so any `iters` compiles once.

  Args:
    model, variables: the RAFT module and its variables.
    fmap1, fmap2: fnet features [h, w, feature_dim] of images 1 and 2.
    net, inp: image 1's initial GRU state [h, w, hidden_dim] and context [h, w, context_dim].
    iters: refinement iterations (static; the reference runs 20).
    flow_init: optional [h, w, 2] initial low-res flow (official `flow_init`, the warm start);
      zeros give exactly what None gives.
    all_iters: return the upsampled flow after every iteration, not only the last.

  Returns:
    (flow_low [h, w, 2] in 1/8-res px, flow_up [H, W, 2] px, or [iters, H, W, 2] if all_iters).
  """
  config = model.config
  pyramid = raft_ops.corr_pyramid(fmap1, fmap2, config.corr_levels)
  coords0 = raft_ops.coords_grid(*fmap1.shape[:2])
  coords1 = coords0 if flow_init is None else coords0 + flow_init
  apply = functools.partial(model.apply, variables)

  def upsample(net, flow):
    if config.small:
      return raft_ops.upflow8(flow)
    return raft_ops.convex_upsample(flow, apply(net, method=RAFT.upsample_mask))

  def step(carry, _):
    net, coords1 = carry
    corr = raft_ops.corr_lookup(pyramid, coords1, config.corr_radius)
    net, delta = apply(net, inp, corr, coords1 - coords0, method=RAFT.update)
    coords1 = coords1 + delta
    return (net, coords1), (upsample(net, coords1 - coords0) if all_iters else None)

  (net, coords1), per_iter = jax.lax.scan(step, (net, coords1), None, length=iters)
  flow_low = coords1 - coords0
  return flow_low, per_iter if all_iters else upsample(net, flow_low)


def raft_flow(model: RAFT, variables: dict, image1: jax.Array, image2: jax.Array, iters: int,
              flow_init: jax.Array | None = None,
              all_iters: bool = False) -> tuple[jax.Array, jax.Array]:
  """RAFT on one pair of images [H, W, 3] in [0, 255] (H, W multiples of 8): `refine` after both
  encoders, as official RAFT(image1, image2, iters, flow_init, test_mode=True) returns."""
  fmap1 = model.apply(variables, image1, method=RAFT.features)
  fmap2 = model.apply(variables, image2, method=RAFT.features)
  net, inp = model.apply(variables, image1, method=RAFT.context)
  return refine(model, variables, fmap1, fmap2, net, inp, iters, flow_init, all_iters)
