"""Full length: does the supervision reach the end points? The long-range witness against the model.

For every video of a `real_quality.py endpoints` run (ROOT/<id>/ with its sequence.npz and
tracks_eval.npz) and the split's ground truth (endpoints.npz: frame-0 queries and their position
and visibility on the last frame), this reads the stored correspondence of the pair
(0, N-1) at each query (the union witness the sampler would train on: direct flow where it
passed its checks, else the chain) and sorts the visible end points into three classes:

  right    the store holds a valid correspondence within --right_px of the truth;
  wrong    it holds one, further off;
  absent   it holds none (both witnesses failed their checks), so the model's end point comes
           only from composing shorter pairs through the canonical space.

Per class it reports the model's median end-point error and its fraction within --right_px, per
video and pooled over the split. Everything at 256x256 px (the runs' and the metrics' size).

  .venv/bin/python benchmarks/endpoint_witness.py ROOT/endpoints_<hash> --split FULL_LENGTH_SPLIT \
      --json benchmarks/results/real/endpoint_witness.json
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from omnimotion_jax.data import store  # noqa: E402

METRIC_SIZE = 256
CLASSES = ('right', 'wrong', 'absent')


def end_witness(seq_path: Path, queries_xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """The stored (0, N-1) correspondence at queries [Q, 2] (x, y) px (nearest pixel).

  Returns targets [Q, 2] (x, y) px on the last frame and valid [Q] bool (the pair's cycle mask,
  which the union filter sets where either witness passed).
  """
  with np.load(seq_path, allow_pickle=False) as npz:
    pairs = npz['pairs']
    height, width = npz['frames'].shape[1:3]
    last = int(pairs.max())
    row = int(np.flatnonzero((pairs[:, 0] == 0) & (pairs[:, 1] == last))[0])
    flow = npz['flows'][row].astype(np.float32)
    valid = store.unpack_masks(npz['cycle'][row:row + 1], height, width)[0]
  xi = np.clip(np.round(queries_xy[:, 0]).astype(int), 0, width - 1)
  yi = np.clip(np.round(queries_xy[:, 1]).astype(int), 0, height - 1)
  return queries_xy + flow[yi, xi], valid[yi, xi]


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('root', help='an endpoints run root: ROOT/endpoints_<hash>')
  parser.add_argument('--split', required=True, help='the full-length split (endpoints.npz)')
  parser.add_argument('--right_px', type=float, default=8.0,
                      help='a correspondence or end point this close to the truth is right (px)')
  parser.add_argument('--json', default=None)
  args = parser.parse_args(argv)
  start = time.time()
  split = Path(args.split)
  pooled = {c: [] for c in CLASSES}
  per_video = {}
  with np.load(split / 'endpoints.npz') as gt:
    gt = dict(gt)
  for video_dir in sorted(p for p in Path(args.root).iterdir() if p.is_dir()):
    name = video_dir.name
    if not (video_dir / 'tracks_eval.npz').exists():
      print(f'{name}: no tracks_eval.npz (unfinished run), skipped')
      continue
    width, height = Image.open(next(iter(sorted((split / name).glob('*.jpg'))))).size
    scale = np.array([METRIC_SIZE / width, METRIC_SIZE / height])
    queries_xy = gt[f'{name}/query_points'][:, [2, 1]] * scale
    end_xy = gt[f'{name}/end_xy'] * scale
    visible = gt[f'{name}/end_visible'].astype(bool)
    with np.load(video_dir / 'tracks_eval.npz') as f:
      model_xy = f['tracks'][:, -1]
    target, valid = end_witness(video_dir / 'sequence.npz', queries_xy)
    witness_err = np.linalg.norm(target - end_xy, axis=-1)
    model_err = np.linalg.norm(model_xy - end_xy, axis=-1)
    kind = np.where(~valid, 'absent', np.where(witness_err <= args.right_px, 'right', 'wrong'))
    row = {'visible': int(visible.sum())}
    for c in CLASSES:
      sel = visible & (kind == c)
      pooled[c].extend(model_err[sel].tolist())
      row[c] = {'n': int(sel.sum()),
                'model_median_px': float(np.median(model_err[sel])) if sel.any() else None,
                'model_right': float(np.mean(model_err[sel] <= args.right_px)) if sel.any() else None}
    per_video[name] = row
    print(f'{name:16s} visible {row["visible"]:2d}  ' + '  '.join(
        f'{c} {row[c]["n"]:2d}' + (f' (model {row[c]["model_median_px"]:.1f} px, '
                                   f'{100 * row[c]["model_right"]:.0f} % right)'
                                   if row[c]['n'] else '') for c in CLASSES), flush=True)
  summary = {c: {'n': len(v), 'model_median_px': float(np.median(v)) if v else None,
                 'model_right': float(np.mean(np.array(v) <= args.right_px)) if v else None}
             for c, v in pooled.items()}
  total = sum(s['n'] for s in summary.values())
  print(f'pooled over {total} visible end points:')
  for c, s in summary.items():
    if s['n']:
      print(f'  {c:6s} {s["n"]:3d} ({100 * s["n"] / total:.0f} %): model median '
            f'{s["model_median_px"]:.1f} px, {100 * s["model_right"]:.0f} % within '
            f'{args.right_px:g} px')
  minutes = (time.time() - start) / 60
  print(f'{minutes:.1f} min')
  if args.json:
    Path(args.json).write_text(json.dumps({
        'root': args.root, 'right_px': args.right_px, 'minutes': round(minutes, 2),
        'summary': summary, 'per_video': per_video}, indent=1))
  return 0


if __name__ == '__main__':
  sys.exit(main())
