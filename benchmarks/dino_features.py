"""Speed and memory of DINO ViT-S/16 features (omnimotion_jax.data.nets.dino.dino_features).

Runs the product's entry point on random weights (the cost does not depend on their values) and
synthetic frames (scikit-image's astronaut resized to the input size): each input size is
resized by the reference's rule (256x256 -> 480x448 px, 28x30 patches; 854x480 -> 480x832 px,
52x30 patches) and run in padded batches of --batch frames, as the preprocess stage does.

  taskset -c 0 .venv/bin/python benchmarks/dino_features.py       # -> results/dino_features.json
  .venv/bin/python benchmarks/dino_features.py --size 256 256 --frames 8 --repeats 3

Each size runs in its own subprocess, so its peak memory (host peak RSS on CPU, including
compilation; device peak_bytes_in_use on an accelerator) is that size's alone. Fields per row:
input and model size, patch grid, compile_s (first call minus a steady call), ms_per_frame
(median over --repeats calls of --frames frames / frames), cpu_ms_per_frame (the same in
process CPU time: on a shared core, what the frames cost rather than how long they waited),
peak_memory_mb.
"""

import argparse
import json
import subprocess
import sys
import time

import numpy as np
from skimage import data as skdata

import common  # Puts the repository root on sys.path.

import cv2  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from omnimotion_jax import progress  # noqa: E402
from omnimotion_jax.data.nets import dino  # noqa: E402

DEFAULT_SIZES = ((256, 256), (480, 854))  # (H, W) px of the input frames.
DEFAULT_JSON = common.RESULTS_DIR / 'dino_features.json'


def measure(height: int, width: int, num_frames: int, batch: int, repeats: int) -> dict:
  """One input size in this process: compile time, ms per frame, peak memory."""
  frame = cv2.resize(skdata.astronaut(), (width, height))
  frames = np.repeat(frame[None], num_frames, axis=0)
  model_size = dino.reference_size(height, width)
  variables = jax.jit(dino.DinoViT().init)(
      jax.random.key(0), jnp.zeros((1, *model_size, 3), jnp.float32))
  run = lambda: dino.dino_features(frames, variables, batch_size=batch)
  with progress.quiet():
    t0 = time.perf_counter()
    run()
    first = time.perf_counter() - t0
    times, cpu_times = [], []
    for _ in range(repeats):
      t0, c0 = time.perf_counter(), time.process_time()
      run()
      times.append(time.perf_counter() - t0)
      cpu_times.append(time.process_time() - c0)
  steady = float(np.median(times))
  grid = (model_size[0] // dino.PATCH, model_size[1] // dino.PATCH)
  return {'input_size': [height, width], 'model_size': list(model_size), 'grid': list(grid),
          'tokens': grid[0] * grid[1] + 1, 'frames': num_frames, 'batch': batch,
          'compile_s': round(first - steady, 2),
          'ms_per_frame': round(1000 * steady / num_frames, 1),
          'ms_per_frame_all': [round(1000 * t / num_frames, 1) for t in times],
          'cpu_ms_per_frame': round(1000 * float(np.median(cpu_times)) / num_frames, 1),
          **common.peak_memory(), 'device': common.device_label(common.device_info())}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--size', type=int, nargs=2, metavar=('H', 'W'), default=None,
                      help='one input size, measured in this process (prints a JSON row)')
  parser.add_argument('--frames', type=int, default=8)
  parser.add_argument('--batch', type=int, default=dino.DEFAULT_BATCH)
  parser.add_argument('--repeats', type=int, default=2)
  parser.add_argument('--json', default=str(DEFAULT_JSON))
  args = parser.parse_args(argv)
  if args.size is not None:
    print(json.dumps(measure(*args.size, args.frames, args.batch, args.repeats)))
    return 0
  rows = []
  for height, width in DEFAULT_SIZES:
    out = subprocess.run(
        [sys.executable, __file__, '--size', str(height), str(width), '--frames',
         str(args.frames), '--batch', str(args.batch), '--repeats', str(args.repeats)],
        check=True, capture_output=True, text=True).stdout
    rows.append(json.loads(out.strip().splitlines()[-1]))
    row = rows[-1]
    print(f"{height}x{width} -> {row['model_size'][0]}x{row['model_size'][1]} px "
          f"({row['tokens']} tokens): {row['ms_per_frame']} ms/frame ({row['cpu_ms_per_frame']} ms "
          f"CPU), compile "
          f"{row['compile_s']} s, peak {row['peak_memory_mb']} MB ({row['peak_memory_kind']})")
  common.write_json(args.json, {'rows': rows, 'device_info': common.device_info(),
                                'command': ' '.join(sys.argv)})
  return 0


if __name__ == '__main__':
  sys.exit(main())
