"""DINO ViT-S/16 patch features in Flax, as the OmniMotion reference extracts them.

The reference (`preprocessing/extract_dino_features.py`, run inside facebookresearch/dino) gives
each frame a grid of appearance features that its pair filter and chaining compare by cosine
similarity (filtering.py). This module reproduces that extraction:

  1. Resize (OpenCV bilinear, on uint8): a portrait frame (H > W) to width 480 and height
     floor(480 H / W / 64) * 64, any other to height 480 and width floor(480 W / H / 64) * 64
     (480x854 -> 480x832, 256x256 -> 480x448; the aspect ratio is not kept exactly).
  2. RGB / 255, normalised per channel with MEAN and STD.
  3. DINO's `VisionTransformer.get_intermediate_layers(x, n=1)`: 16x16 patch embedding, the CLS
     token, the 14x14 positional embedding resampled to the patch grid (`interpolate_pos_embed`),
     12 pre-norm blocks, the final LayerNorm. The CLS token is dropped and the patch tokens are
     reshaped to float32 [H / 16, W / 16, 384], not L2-normalised.

Frames are laid out [N, H, W, 3] uint8 RGB (raster rows first); features [N, h, w, 384] with
feature (r, c) covering image pixels [16 r, 16 r + 16) x [16 c, 16 c + 16). `dino_features` runs
fixed-size padded batches through one jitted function per (frame size, batch, devices), split
over a 1-D device mesh with `shard_map` as train/batch.py splits videos.

Weights: `dino_convert.convert_state_dict` turns the DINO release (dino_deitsmall16_pretrain.pth)
into a weights file (weights.py); `load_variables` reads and checks one.
"""

import functools
import math
import os
from collections.abc import Sequence

import cv2
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from omnimotion_jax import progress
from omnimotion_jax.data.nets import weights as weights_lib
from omnimotion_jax.errors import UserInputError

KIND = 'dino_vits16'  # weights.KINDS key.
PATCH = 16  # Patch side (px).
EMBED_DIM = 384  # Token width of ViT-S.
DEPTH = 12  # Transformer blocks.
NUM_HEADS = 6
MLP_RATIO = 4
LAYER_NORM_EPS = 1e-6  # DINO's vit_small: partial(nn.LayerNorm, eps=1e-6).
PRETRAIN_GRID = 14  # The positional embedding's grid (224 px / 16), 14x14 + the CLS entry.
# DINO adds 0.1 to the target grid before computing the interpolation's scale factor
# (vision_transformer.py, interpolate_pos_encoding; facebookresearch/dino issue 8).
POS_SCALE_OFFSET = 0.1
BICUBIC_A = -0.75  # PyTorch's bicubic convolution constant.
# Reference resize rule (extract_dino_features.py, read_frame): the short side becomes
# SHORT_SIDE px and the other side a multiple of SIZE_MULTIPLE px.
SHORT_SIDE = 480
SIZE_MULTIPLE = 64
MEAN = (0.485, 0.456, 0.406)
# 0.228 (not ImageNet's 0.229) is the reference's value (extract_dino_features.py,
# color_normalize); reproduced as it is.
STD = (0.228, 0.224, 0.225)
FRAME_AXIS = 'frames'
# float32 matmuls and convolutions everywhere (no TF32 on GPUs): PyTorch's default for matmuls,
# needed for parity, and cheap (ViT-S/16 is ~0.1 TFLOP per 480x832 frame).
PRECISION = jax.lax.Precision.HIGHEST
DEFAULT_BATCH = 8  # Frames per compiled call (config data.dino_batch).


def reference_size(height: int, width: int) -> tuple[int, int]:
  """(height, width) the reference resizes an H x W frame to before DINO (module docstring)."""
  if height > width:
    return int((SHORT_SIDE * height / width) // SIZE_MULTIPLE * SIZE_MULTIPLE), SHORT_SIDE
  return SHORT_SIDE, int((SHORT_SIDE * width / height) // SIZE_MULTIPLE * SIZE_MULTIPLE)


def resize_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """uint8 [N, H, W, 3] -> uint8 [N, height, width, 3] with cv2.resize's default (bilinear)
  interpolation on uint8, as the reference resizes (before converting to float)."""
  height, width = size
  if frames.shape[1:3] == (height, width):
    return frames
  return np.stack([cv2.resize(f, (width, height)) for f in frames])


def normalize(frames: jax.Array) -> jax.Array:
  """uint8 [..., 3] RGB -> float32 (x / 255 - MEAN) / STD, in the reference's order."""
  x = frames.astype(jnp.float32) / 255.0
  return (x - jnp.asarray(MEAN, jnp.float32)) / jnp.asarray(STD, jnp.float32)


def bicubic_matrix(in_size: int, out_size: int, scale: float) -> np.ndarray:
  """float64 [out_size, in_size]: 1-D resampling by PyTorch's bicubic F.interpolate.

  Reproduces `interpolate(mode='bicubic', align_corners=False, scale_factor=scale)`: output
  sample o reads the source coordinate (o + 0.5) / scale - 0.5 (the given scale, not
  in_size / out_size), the cubic convolution kernel with A = -0.75 on the 4 nearest samples,
  source indices clamped to the border. Rows sum to 1.
  """
  src = (np.arange(out_size) + 0.5) * (1.0 / scale) - 0.5
  base = np.minimum(np.floor(src), in_size - 1)
  t = np.clip(src - base, 0.0, 1.0)
  a = BICUBIC_A
  near = lambda x: ((a + 2) * x - (a + 3)) * x * x + 1  # |x| <= 1.
  far = lambda x: ((a * x - 5 * a) * x + 8 * a) * x - 4 * a  # 1 < |x| < 2.
  taps = (far(t + 1), near(t), near(1 - t), far(2 - t))
  matrix = np.zeros((out_size, in_size))
  rows = np.arange(out_size)
  for k, weight in enumerate(taps):
    np.add.at(matrix, (rows, np.clip(base.astype(int) - 1 + k, 0, in_size - 1)), weight)
  return matrix


def interpolate_pos_embed(pos_embed: jax.Array, grid: tuple[int, int],
                          image_size: tuple[int, int]) -> jax.Array:
  """DINO's `interpolate_pos_encoding`: [1 + G * G, C] (CLS first) -> [1 + h * w, C].

  grid: (h, w) patch grid; image_size: (H, W) px of the input. The G x G patch entries are
  resampled bicubically with scale factors ((h + 0.1) / G, (w + 0.1) / G); the CLS entry is kept.
  As in DINO, the embedding is used as it is when the grid has G * G patches and H == W.
  """
  num = pos_embed.shape[0] - 1
  side = math.isqrt(num)
  (h, w), (height, width) = grid, image_size
  if h * w == num and height == width:
    return pos_embed
  rows = bicubic_matrix(side, h, (h + POS_SCALE_OFFSET) / side).astype(np.float32)
  cols = bicubic_matrix(side, w, (w + POS_SCALE_OFFSET) / side).astype(np.float32)
  patches = pos_embed[1:].reshape(side, side, -1)
  resampled = jnp.einsum('ai,bj,ijc->abc', rows, cols, patches, precision=PRECISION)
  return jnp.concatenate([pos_embed[:1], resampled.reshape(h * w, -1)], axis=0)


class Attention(nn.Module):
  """Multi-head self-attention over tokens [B, T, C], one qkv projection with bias."""
  num_heads: int
  precision: jax.lax.Precision = PRECISION

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    batch, tokens, dim = x.shape
    head_dim = dim // self.num_heads
    # DINO's layout: qkv(x).reshape(B, T, 3, heads, head_dim).
    qkv = nn.Dense(3 * dim, precision=self.precision, name='qkv')(x)
    qkv = qkv.reshape(batch, tokens, 3, self.num_heads, head_dim)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    logits = jnp.einsum('bqhd,bkhd->bhqk', q, k, precision=self.precision)
    weights = jax.nn.softmax(logits * head_dim ** -0.5, axis=-1)
    out = jnp.einsum('bhqk,bkhd->bqhd', weights, v, precision=self.precision)
    return nn.Dense(dim, precision=self.precision, name='proj')(out.reshape(batch, tokens, dim))


class Mlp(nn.Module):
  """fc1 -> exact (erf) GELU -> fc2, hidden width mlp_ratio * C."""
  mlp_ratio: int
  precision: jax.lax.Precision = PRECISION

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    dim = x.shape[-1]
    x = nn.Dense(self.mlp_ratio * dim, precision=self.precision, name='fc1')(x)
    return nn.Dense(dim, precision=self.precision, name='fc2')(nn.gelu(x, approximate=False))


class Block(nn.Module):
  """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""
  num_heads: int
  mlp_ratio: int
  precision: jax.lax.Precision = PRECISION

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = x + Attention(self.num_heads, self.precision, name='attn')(
        nn.LayerNorm(LAYER_NORM_EPS, name='norm1')(x))
    return x + Mlp(self.mlp_ratio, self.precision, name='mlp')(
        nn.LayerNorm(LAYER_NORM_EPS, name='norm2')(x))


class DinoViT(nn.Module):
  """DINO's ViT backbone (ViT-S/16 by default) returning the last block's normalised patch tokens.

  Input: normalised images float32 [B, H, W, 3] (H, W multiples of 16; any remainder is dropped
  as by the strided convolution). Output: float32 [B, H // 16, W // 16, embed_dim].
  Parameter names follow DINO's state dict (converted by dino_convert.py). Matmuls and the patch
  convolution run at `precision` (PRECISION: full float32).
  """
  depth: int = DEPTH
  embed_dim: int = EMBED_DIM
  num_heads: int = NUM_HEADS
  mlp_ratio: int = MLP_RATIO
  precision: jax.lax.Precision = PRECISION

  @nn.compact
  def __call__(self, images: jax.Array) -> jax.Array:
    batch, height, width, _ = images.shape
    x = nn.Conv(self.embed_dim, (PATCH, PATCH), strides=(PATCH, PATCH), padding='VALID',
                precision=self.precision, name='patch_embed')(images)
    grid = x.shape[1:3]
    x = x.reshape(batch, grid[0] * grid[1], self.embed_dim)
    init = nn.initializers.truncated_normal(0.02)
    cls_token = self.param('cls_token', init, (1, 1, self.embed_dim))
    pos_embed = self.param('pos_embed', init, (1, PRETRAIN_GRID ** 2 + 1, self.embed_dim))
    x = jnp.concatenate([jnp.broadcast_to(cls_token, (batch, 1, self.embed_dim)), x], axis=1)
    x = x + interpolate_pos_embed(pos_embed[0], grid, (height, width))
    for i in range(self.depth):
      x = Block(self.num_heads, self.mlp_ratio, self.precision, name=f'blocks_{i}')(x)
    x = nn.LayerNorm(LAYER_NORM_EPS, name='norm')(x)
    return x[:, 1:].reshape(batch, *grid, self.embed_dim)


def num_blocks(variables: dict) -> int:
  """Transformer depth of a DinoViT variables tree."""
  return sum(1 for name in variables['params'] if name.startswith('blocks_'))


@functools.lru_cache(maxsize=4)
def compiled_features(depth: int, devices: tuple[jax.Device, ...]):
  """jit(variables, uint8 frames [B, H, W, 3]) -> float32 [B, H / 16, W / 16, 384].

  B must be a multiple of len(devices): a `shard_map` over a 1-D 'frames' mesh gives each device
  B / D frames and a replicated copy of the variables; no cross-device traffic. Compiles once
  per frame size and B.
  """
  model = DinoViT(depth=depth)
  mesh = Mesh(np.asarray(devices), (FRAME_AXIS,))

  def local(variables, frames):
    return model.apply(variables, normalize(frames))

  return jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(PartitionSpec(),
                                                           PartitionSpec(FRAME_AXIS)),
                               out_specs=PartitionSpec(FRAME_AXIS)))


def dino_features(frames: np.ndarray, variables: dict, *, batch_size: int = DEFAULT_BATCH,
                  devices: Sequence[jax.Device] | None = None,
                  size: tuple[int, int] | None = None) -> np.ndarray:
  """Per-frame DINO patch features of a video, as the OmniMotion reference extracts them.

  Args:
    frames: uint8 [N, H, W, 3] RGB frames.
    variables: DinoViT variables ({'params': ...}; `load_variables` or
      `dino_convert.convert_state_dict`).
    batch_size: frames per compiled call (rounded up to a multiple of the devices used); the last
      call is padded, so every call has one shape and compiles once.
    devices: devices to split each call's frames over (default: all local devices, at most
      batch_size of them).
    size: (height, width) px to resize to; None applies the reference's rule (`reference_size`).

  Returns:
    float32 [N, height // 16, width // 16, 384] on the host.
  """
  frames = np.asarray(frames)
  if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
    raise ValueError(f'frames: expected uint8 [N, H, W, 3], got {frames.dtype} {frames.shape}')
  if batch_size < 1:
    raise ValueError(f'batch_size={batch_size}: pass at least 1 frame per call.')
  height, width = size if size is not None else reference_size(*frames.shape[1:3])
  devices = tuple(jax.local_devices() if devices is None else devices)[:batch_size]
  slots = -(-batch_size // len(devices)) * len(devices)
  features_fn = compiled_features(num_blocks(variables), devices)
  mesh = Mesh(np.asarray(devices), (FRAME_AXIS,))
  variables = jax.device_put(variables, NamedSharding(mesh, PartitionSpec()))
  frame_sharding = NamedSharding(mesh, PartitionSpec(FRAME_AXIS))
  num = len(frames)
  out = np.empty((num, height // PATCH, width // PATCH, EMBED_DIM), np.float32)
  pending = None  # (start, count, device result): fetched after the next call is dispatched.
  with progress.bar(total=num, desc='dino', unit='frame') as bar:
    for start in range(0, num, slots):
      block = resize_frames(frames[start:start + slots], (height, width))
      count = len(block)
      block = np.concatenate([block, np.repeat(block[-1:], slots - count, axis=0)])
      result = features_fn(variables, jax.device_put(block, frame_sharding))
      if pending is not None:
        bar.update(_fetch(out, *pending))
      pending = (start, count, result)
    if pending is not None:
      bar.update(_fetch(out, *pending))
  return out


def _fetch(out: np.ndarray, start: int, count: int, result: jax.Array) -> int:
  out[start:start + count] = np.asarray(result)[:count]
  return count


def load_variables(path: str | os.PathLike | None,
                   option: str = 'data.dino_weights') -> dict:
  """DinoViT variables from a converted weights file, checked against the model's shapes.

  Errors (one line) name the file, the config field `option` and the converter command.
  """
  variables, _ = weights_lib.load_weights(path, KIND, option)
  weights_lib.check_shapes(variables, variable_shapes(num_blocks(variables)), path, KIND, option)
  return variables


@functools.lru_cache(maxsize=2)
def variable_shapes(depth: int = DEPTH) -> dict[str, tuple[int, ...]]:
  """{'params/…': shape} of a DinoViT of `depth` blocks (the weights file's flat keys)."""
  tree = jax.eval_shape(DinoViT(depth=depth).init, jax.random.key(0),
                        jnp.zeros((1, PATCH * PRETRAIN_GRID, PATCH * PRETRAIN_GRID, 3)))
  return {k: tuple(v.shape) for k, v in traverse_util.flatten_dict(tree, sep='/').items()}
