"""Writes dino_fixtures.npz: PyTorch ViT-S/16 outputs on random weights, for test_dino.py.

Rerun (needs torch, timm, scikit-image and numpy; not the project's venv, which has no torch):

  taskset -c 0 PYTHON tests/data/nets/make_dino_fixtures.py   # PYTHON: an interpreter with PyTorch

The PyTorch network is timm's vit_small_patch16_224, the same architecture as DINO's
vision_transformer.vit_small (patch 16, width 384, 12 blocks, 6 heads, qkv bias, LayerNorm eps
1e-6, exact GELU, final norm). Differences from DINO found in timm 1.0 and how they are handled:
  - timm resamples the positional embedding (dynamic_img_size=True) with F.interpolate(size=...,
    antialias=True), and PyTorch's antialiased bicubic uses A = -0.5; DINO calls
    F.interpolate(scale_factor=((h0 + 0.1) / 14, (w0 + 0.1) / 14), mode='bicubic') (A = -0.75,
    sample positions from the scale factor). So the model is built for the test image size and
    given the embedding interpolated here exactly as DINO's interpolate_pos_encoding does.
  - timm's default has a 1000-way classifier 'head.{weight,bias}' (the 'timm' layout); DINO's
    backbone has none. Unused for features.
  - timm computes attention with F.scaled_dot_product_attention, DINO explicitly: equal up to
    float rounding.
Features are forward_features(x)[:, 1:] (the final norm's patch tokens), what DINO's
get_intermediate_layers(x, n=1)[0][:, 1:] returns.

Weights are not stored: dino_random_state.random_state(spec, SEED) regenerates them; the fixture
keeps the (key, shape) spec and per-tensor checksums. Input frames are integer crops (and a 2x
pixel repeat) of scikit-image's astronaut and chelsea photos, recomputed by the test from CROPS.
"""

import json
import math
from pathlib import Path

import numpy as np
import skimage.data
import timm
import torch
import torch.nn.functional as F

import dino_random_state

SEED = 0
OUT = Path(__file__).with_name('dino_fixtures.npz')
# (photo, row, col, height, width, repeat): photo[row:row + h, col:col + w] repeated `repeat`x.
# 'small': 160x208 px -> a 10x13 patch grid (not square, not 14 in either direction), both
# frames one size (batched tests); 'large': 480x704 px, a size the reference's resize rule keeps
# (height 480, width a multiple of 64), 30x44 patches.
CROPS = {'small': [('astronaut', 40, 150, 160, 208, 1), ('chelsea', 60, 120, 160, 208, 1)],
         'large': [('chelsea', 30, 50, 240, 352, 2)]}
# Stored channels of the large frame's features and of the positional embeddings (fixture size).
CHANNELS = slice(None, None, 8)
BICUBIC_GRIDS = [(10, 13), (30, 44), (14, 14), (3, 60), (28, 30)]  # float64 resampling cases.
MEAN, STD = (0.485, 0.456, 0.406), (0.228, 0.224, 0.225)  # extract_dino_features.py's values.


def crop_frames(crops) -> np.ndarray:
  frames = []
  for name, row, col, height, width, repeat in crops:
    photo = getattr(skimage.data, name)()[row:row + height, col:col + width]
    frames.append(np.repeat(np.repeat(photo, repeat, axis=0), repeat, axis=1))
  return np.stack(frames)


def reference_input(frame: np.ndarray) -> torch.Tensor:
  """extract_dino_features.py read_frame after its resize: float32 / 255, CHW, color_normalize."""
  img = torch.from_numpy(np.transpose(frame.astype(np.float32) / 255.0, (2, 0, 1)).copy())
  for channel, m, s in zip(img, MEAN, STD):
    channel.sub_(m)
    channel.div_(s)
  return img


def dino_pos_embed(pos_embed: torch.Tensor, height: int, width: int) -> torch.Tensor:
  """DINO's interpolate_pos_encoding for an input of height x width px (its w, h are H, W)."""
  num = pos_embed.shape[1] - 1
  side = int(math.sqrt(num))
  rows, cols = height // 16, width // 16
  if rows * cols == num and height == width:
    return pos_embed
  patch = pos_embed[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
  patch = F.interpolate(patch, scale_factor=((rows + 0.1) / side, (cols + 0.1) / side),
                        mode='bicubic')
  assert patch.shape[-2:] == (rows, cols)
  return torch.cat([pos_embed[:, :1], patch.permute(0, 2, 3, 1).reshape(1, rows * cols, -1)], 1)


def features(state: dict, frames: np.ndarray, dtype=torch.float32):
  """(features [N, h, w, 384], interpolated pos_embed [1 + h * w, 384]) of one frame size."""
  height, width = frames.shape[1:3]
  model = timm.create_model('vit_small_patch16_224', img_size=(height, width)).eval()
  pos = dino_pos_embed(torch.from_numpy(state['pos_embed']), height, width)
  torch_state = {k: torch.from_numpy(v) for k, v in state.items()}
  torch_state['pos_embed'] = pos
  head = model.state_dict()
  torch_state.update({k: torch.zeros_like(head[k]) for k in ('head.weight', 'head.bias')})
  model.load_state_dict(torch_state, strict=True)
  model = model.to(dtype)
  with torch.no_grad():
    x = torch.stack([reference_input(f) for f in frames]).to(dtype)
    out = model.forward_features(x)[:, 1:]
  out = out.reshape(len(frames), height // 16, width // 16, -1).numpy()
  return out, pos[0].numpy()


def bicubic_cases() -> dict:
  values = np.random.default_rng(SEED + 1).standard_normal((14, 14, 3))
  cases = {'bicubic_input': values}
  image = torch.from_numpy(values).permute(2, 0, 1)[None]
  for rows, cols in BICUBIC_GRIDS:
    out = F.interpolate(image, scale_factor=((rows + 0.1) / 14, (cols + 0.1) / 14),
                        mode='bicubic')
    cases[f'bicubic_{rows}x{cols}'] = out[0].permute(1, 2, 0).numpy()
  return cases


def main():
  torch.set_num_threads(1)
  model = timm.create_model('vit_small_patch16_224', num_classes=0)
  spec = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
  timm_spec = [(k, tuple(v.shape)) for k, v in
               timm.create_model('vit_small_patch16_224').state_dict().items()]
  state = dino_random_state.random_state(spec, SEED)
  out = {'spec': np.array(json.dumps(spec)), 'timm_spec': np.array(json.dumps(timm_spec)),
         'seed': np.array(SEED), 'checksums': dino_random_state.checksums(state),
         'crops': np.array(json.dumps(CROPS)), **bicubic_cases()}
  for name, crops in CROPS.items():
    frames = crop_frames(crops)
    feats, pos = features(state, frames)
    feats64, _ = features(state, frames, torch.float64)
    error = np.abs(feats - feats64).max() / np.abs(feats64).max()
    print(f'{name}: frames {frames.shape}, features {feats.shape}; float32 vs float64 PyTorch: '
          f'max |a - b| / max |b| = {error:.2e}')
    out[f'{name}_frames_sum'] = frames.astype(np.int64).sum(axis=(1, 2, 3))
    out[f'{name}_features'] = feats[..., CHANNELS] if name == 'large' else feats
    out[f'{name}_pos_embed'] = pos[:, CHANNELS]
  np.savez_compressed(OUT, **out)
  print(f'{OUT}: {OUT.stat().st_size / 1e6:.2f} MB')


if __name__ == '__main__':
  main()
