"""Writes the RAFT parity fixtures: torchvision's RAFT on random weights and two real frames.

Rerun (needs PyTorch and torchvision, never needed by the tests themselves; pinned to core 0):

  taskset -c 0 PYTHON tests/data/nets/make_raft_fixtures.py   # PYTHON: an interpreter with PyTorch

(any Python with torch, torchvision, numpy and scikit-image works). For each model ('raft' =
torchvision raft_large, 'raft_small' = raft_small) it builds random weights with
raft_fixture_weights.random_state from the model's state-dict (key, shape) list, loads them with
load_state_dict, and runs 20 refinement iterations on two frames of scikit-image's Middlebury
motorcycle stereo pair, resized to 123x171 (not multiples of 8): padded to 128x176 as the
official RAFT InputPadder does (default mode 'sintel': replicate the edge, half of the padding on
each side, the extra pixel at the bottom / right), normalised to 2 x / 255 - 1 (torchvision's
RAFT takes normalised images; the official RAFT normalises inside), and unpadded.

Outputs (fixtures/, about 1 MB in all):
  raft_keys.json   {'seed', 'versions', 'models': {kind: [[key, shape], ...]}}.
  raft_parity.npz  frames uint8 [2, 123, 171, 3]; for each kind, '{kind}_iters' float32
                   [20, 26, 36, 2]: the padded-size flow (dx, dy) px after every iteration at
                   every SUBSAMPLE-th pixel (5 is prime to 8, so all 64 convex-upsampling
                   phases are covered), and '{kind}_final' float32 [123, 171, 2]: the unpadded
                   flow after the last iteration at every pixel.
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from skimage import data as skdata
from skimage import transform
from torchvision.models.optical_flow import raft_large, raft_small

sys.path.insert(0, str(Path(__file__).resolve().parent))
import raft_fixture_weights  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / 'fixtures'
SIZE = (123, 171)  # (H, W) px of the frames; padded to (128, 176).
ITERS = 20  # As the reference's exhaustive_raft.py.
SUBSAMPLE = 5
MODELS = {'raft': raft_large, 'raft_small': raft_small}


def frames() -> np.ndarray:
  """uint8 [2, H, W, 3]: the left and right views of the motorcycle stereo pair, resized."""
  left, right, _ = skdata.stereo_motorcycle()
  out = [transform.resize(image, SIZE, anti_aliasing=True, preserve_range=True)
         for image in (left, right)]
  return np.stack(out).round().clip(0, 255).astype(np.uint8)


def official_padding(height: int, width: int) -> list[int]:
  """[left, right, top, bottom] of official core/utils/utils.py InputPadder, mode 'sintel'."""
  pad_ht = (((height // 8) + 1) * 8 - height) % 8
  pad_wd = (((width // 8) + 1) * 8 - width) % 8
  return [pad_wd // 2, pad_wd - pad_wd // 2, pad_ht // 2, pad_ht - pad_ht // 2]


def run(kind: str, images: np.ndarray) -> tuple[list, np.ndarray, np.ndarray]:
  torch.manual_seed(0)
  model = MODELS[kind]().eval()
  keys = [[k, list(v.shape)] for k, v in model.state_dict().items()]
  state = raft_fixture_weights.random_state(keys)
  model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
  pad = official_padding(*SIZE)
  batch = torch.from_numpy(images).permute(0, 3, 1, 2).float()
  batch = F.pad(batch, pad, mode='replicate')
  batch = 2 * (batch / 255.0) - 1.0
  with torch.no_grad():
    flows = model(batch[:1], batch[1:], num_flow_updates=ITERS)
  per_iter = torch.stack(flows)[:, 0].permute(0, 2, 3, 1).numpy()  # [iters, Hp, Wp, 2]
  height, width = per_iter.shape[1:3]
  final = per_iter[-1, pad[2]:height - pad[3], pad[0]:width - pad[1]]
  print(f'{kind}: {len(keys)} tensors, final flow |dx|,|dy| max '
        f'{np.abs(final).max(axis=(0, 1))}, mean {np.abs(final).mean():.2f} px')
  return keys, per_iter[:, ::SUBSAMPLE, ::SUBSAMPLE].copy(), np.ascontiguousarray(final)


def main() -> None:
  torch.set_num_threads(1)
  images = frames()
  arrays, models = {'frames': images}, {}
  for kind in MODELS:
    models[kind], arrays[f'{kind}_iters'], arrays[f'{kind}_final'] = run(kind, images)
  FIXTURES.mkdir(exist_ok=True)
  np.savez_compressed(FIXTURES / 'raft_parity.npz', **arrays)
  meta = {'seed': raft_fixture_weights.SEED, 'iters': ITERS, 'subsample': SUBSAMPLE,
          'versions': {'torch': torch.__version__, 'torchvision': torchvision.__version__},
          'models': models}
  (FIXTURES / 'raft_keys.json').write_text(json.dumps(meta))
  print(f'wrote {FIXTURES}')


if __name__ == '__main__':
  main()
