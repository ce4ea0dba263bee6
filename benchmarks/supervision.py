"""How good is the supervision? Stored (filtered, chained) flows against TAP-Vid ground truth.

For every preprocessed video of an `omnimotion-jax eval` output folder (OUT/videos/<id>/run_*/
sequence.npz) and the ground-truth tracks of the same videos (a gt.npz with '<id>/points'
[n, T, 2] normalised (x, y) and '<id>/occluded' [n, T], as in the TAP-Vid-DAVIS dev split), this
samples every stored pair's flow at the ground-truth point of frame i (bilinear) and compares the
flow target with the ground-truth point of frame j, per frame gap:

  valid     fraction of points visible in both frames that the training sampler would use
            (gap 1: all pixels; otherwise the cycle or occluded-but-reliable masks at the
            nearest pixel);
  epe_all   median end-point error (px at the store's resolution, then scaled to 256x256) over
            all points visible in both frames;
  epe_valid median error over the valid ones; bad_valid: fraction of those more than 8 px off
            (wrong supervision that survived the filters);
  occ_valid fraction of points visible in i and occluded in j that the filters still pass as
            co-visible (cycle mask; supervision onto an occluder).

  .venv/bin/python benchmarks/supervision.py --eval_out out/eval_davis32 \
      --gt /path/to/tapvid_davis32_dev/gt.npz --json benchmarks/results/supervision.json
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from omnimotion_jax import workdir as workdir_lib  # noqa: E402
from omnimotion_jax.data import filtering  # noqa: E402
from omnimotion_jax.data import store  # noqa: E402

BAD_PX = 8.0  # A valid correspondence further than this (px at 256x256) from the truth is wrong.
METRIC_SIZE = 256


def video_stats(seq: store.SequenceData, points: np.ndarray, occluded: np.ndarray) -> list[dict]:
  """Per stored pair, the flow error at ground-truth points (rows: dicts with gap and arrays)."""
  height, width = seq.size
  px = points * np.array([width, height], np.float32)  # Normalised -> store raster px.
  scale = METRIC_SIZE / np.array([width, height], np.float32)
  rows = []
  flows = np.asarray(seq.flows)
  for k, (i, j) in enumerate(np.asarray(seq.pairs)):
    vis_i = ~occluded[:, i]
    both = vis_i & ~occluded[:, j]
    occ_j = vis_i & occluded[:, j]
    p = px[:, i]
    flow = filtering.bilinear_sample(flows[k].astype(np.float32), p[:, 0], p[:, 1])
    err = np.linalg.norm((p + flow - px[:, j]) * scale, axis=-1)
    xi = np.clip(np.round(p[:, 0]).astype(int), 0, width - 1)
    yi = np.clip(np.round(p[:, 1]).astype(int), 0, height - 1)
    cycle = np.asarray(seq.cycle[k])[yi, xi]
    valid = cycle | np.asarray(seq.occluded[k])[yi, xi]
    gap = abs(int(j) - int(i))
    if gap == 1:
      valid = np.ones_like(valid)
    rows.append({'gap': gap, 'err': err[both], 'valid': valid[both], 'occ_cycle': cycle[occ_j]})
  return rows


def summarize(rows: list[dict]) -> dict:
  out = {}
  for gap in sorted({r['gap'] for r in rows}):
    sel = [r for r in rows if r['gap'] == gap]
    err = np.concatenate([r['err'] for r in sel])
    valid = np.concatenate([r['valid'] for r in sel])
    occ = np.concatenate([r['occ_cycle'] for r in sel])
    if not err.size:
      continue
    ev = err[valid]
    out[gap] = {
        'points': int(err.size), 'valid': float(valid.mean()),
        'epe_all': float(np.median(err)),
        'epe_valid': float(np.median(ev)) if ev.size else float('nan'),
        'bad_valid': float((ev > BAD_PX).mean()) if ev.size else float('nan'),
        'within2_valid': float((ev < 2).mean()) if ev.size else float('nan'),
        'occ_points': int(occ.size), 'occ_valid': float(occ.mean()) if occ.size else float('nan'),
    }
  return out


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--eval_out', required=True, help='an `omnimotion-jax eval` --out folder')
  parser.add_argument('--gt', required=True, help="gt.npz with '<id>/points', '<id>/occluded'")
  parser.add_argument('--json', default=None)
  args = parser.parse_args(argv)
  gt = np.load(args.gt)
  names = sorted({k.split('/')[0] for k in gt.files})
  all_rows, per_video = [], {}
  for name in names:
    stores = sorted(Path(args.eval_out, 'videos', name).glob(f'run_*/{workdir_lib.STORE}'))
    if not stores:
      print(f'{name}: no store under {args.eval_out}; skipped')
      continue
    seq = store.load_store(stores[-1])
    rows = video_stats(seq, gt[f'{name}/points'], gt[f'{name}/occluded'])
    per_video[name] = summarize(rows)
    all_rows += rows
  overall = summarize(all_rows)
  print('| gap | points | valid | median EPE all | median EPE valid | valid <2 px | valid >8 px '
        '| occluded-in-j passed as visible |')
  print('|---|---|---|---|---|---|---|---|')
  for gap, s in overall.items():
    print(f'| {gap} | {s["points"]} | {100 * s["valid"]:.0f} % | {s["epe_all"]:.2f} | '
          f'{s["epe_valid"]:.2f} | {100 * s["within2_valid"]:.0f} % | '
          f'{100 * s["bad_valid"]:.1f} % | {100 * s["occ_valid"]:.0f} % of {s["occ_points"]} |')
  print('\nper video, gap 1 / gap 4 / longest gap: median EPE valid (valid fraction)')
  for name, stats in per_video.items():
    gaps = sorted(stats)
    cells = [f'g{g}: {stats[g]["epe_valid"]:.2f} ({100 * stats[g]["valid"]:.0f} %)'
             for g in (gaps[0], 4, gaps[-1]) if g in stats]
    print(f'  {name}: ' + ', '.join(cells))
  if args.json:
    Path(args.json).write_text(json.dumps({'overall': overall, 'per_video': per_video},
                                          indent=1))
  return 0


if __name__ == '__main__':
  sys.exit(main())
