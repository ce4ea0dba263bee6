"""End-point error of each OpenCV DIS preset on a real image pair with ground truth.

Data: the Middlebury 2014 "motorcycle" stereo pair shipped with scikit-image
(`skimage.data.stereo_motorcycle()` -> left, right, disparity). The flow from left to right is
(-d, 0) px where the disparity d is finite (occluded pixels have d = inf and are skipped).

Usage:
  python benchmarks/dis_epe.py            # prints a table, writes benchmarks/results/dis_epe.json
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
from skimage import data as skdata

from omnimotion_jax.data import flow as flow_lib

RESULTS = Path(__file__).parent / 'results' / 'dis_epe.json'
REPEATS = 3  # timing repeats (the fastest is reported)
OUTLIER_PX = (1.0, 3.0)  # report the fraction of pixels with EPE above these (px)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--out', type=Path, default=RESULTS)
  args = parser.parse_args()

  left, right, disparity = skdata.stereo_motorcycle()
  frames = np.stack([left, right])
  valid = np.isfinite(disparity)
  truth = np.stack([-np.where(valid, disparity, 0), np.zeros_like(disparity)], -1)
  rows = []
  for preset in flow_lib.DIS_PRESETS:
    backend = flow_lib.make_backend('dis', frames, dis_preset=preset)
    seconds = []
    for _ in range(REPEATS):
      start = time.perf_counter()
      flow = backend.flow(0, 1)
      seconds.append(time.perf_counter() - start)
    epe = np.linalg.norm(flow - truth, axis=-1)[valid]
    rows.append({'preset': preset, 'epe_px': round(float(epe.mean()), 3),
                 'median_px': round(float(np.median(epe)), 3),
                 **{f'above_{t:g}px': round(float(np.mean(epe > t)), 4) for t in OUTLIER_PX},
                 'seconds': round(min(seconds), 4)})
  best = min(rows, key=lambda r: r['epe_px'])['preset']
  result = {'data': 'skimage.data.stereo_motorcycle (Middlebury 2014), left -> right, '
                    'ground truth (-disparity, 0), pixels with finite disparity',
            'size_hw': list(left.shape[:2]), 'valid_pixels': int(valid.sum()),
            'presets': rows, 'best_preset': best}
  args.out.parent.mkdir(parents=True, exist_ok=True)
  args.out.write_text(json.dumps(result, indent=2) + '\n')

  print(f'DIS on stereo_motorcycle {left.shape[1]}x{left.shape[0]}, {valid.sum()} valid pixels')
  print(f'{"preset":10s} {"EPE px":>8s} {"median":>8s} {">1px":>7s} {">3px":>7s} {"ms":>7s}')
  for r in rows:
    print(f'{r["preset"]:10s} {r["epe_px"]:8.3f} {r["median_px"]:8.3f} {r["above_1px"]:7.3f} '
          f'{r["above_3px"]:7.3f} {1000 * r["seconds"]:7.1f}')
  print(f'best: {best}; wrote {args.out}')


if __name__ == '__main__':
  main()
