"""Where do the tracks go wrong? Errors and occlusion calls by distance from the query frame.

For every scored video of an `omnimotion-jax eval` output folder (OUT/videos/<id>/run_*/ with
gt.npz and checkpoints/, file names as in omnimotion_jax/workdir.py), this re-tracks the trained
model (optionally with other tracking settings, `--set track.cycle_threshold=0` etc.; nothing is
retrained) and rebuilds the chained-flow baseline from the same store, then breaks both down by the frame distance |t - t_query|:

  err       median end-point error of ground-truth-visible points (px at 256x256);
  false_occ fraction of ground-truth-visible points predicted occluded;
  missed    fraction of ground-truth-occluded points predicted visible;
and the same pooled by how fast each ground-truth point moves (median px per frame at 256x256
over its visible consecutive frames: static < 0.5, slow 0.5-2, fast > 2), and prints the TAP-Vid
metrics of both trackers with these settings, per video and on average. `--reuse` scores the
tracks_diagnose.npz of an earlier call instead of re-tracking.

  .venv/bin/python benchmarks/diagnose.py --eval_out out/eval_davis32 --config cpu_quality \
      [--set track.cycle_threshold=0] [--json out.json]
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from omnimotion_jax import pipeline  # noqa: E402
from omnimotion_jax import progress  # noqa: E402
from omnimotion_jax import workdir as workdir_lib  # noqa: E402
from omnimotion_jax.config import load_config  # noqa: E402
from omnimotion_jax.data import store  # noqa: E402
from omnimotion_jax.evaluation import baselines  # noqa: E402
from omnimotion_jax.evaluation import score as evaluate  # noqa: E402

BUCKETS = ((1, 2), (3, 5), (6, 10), (11, 20), (21, 10_000))
SPEEDS = (('static', 0.0, 0.5), ('slow', 0.5, 2.0), ('fast', 2.0, np.inf))  # px/frame at 256


def point_speed(gt, gt_occ, size) -> np.ndarray:
  """[N] median px per frame (at 256x256) of each track over its visible consecutive frames."""
  scale = np.array([256 / size[1], 256 / size[0]])
  step = np.linalg.norm(np.diff(gt * scale, axis=1), axis=-1)
  both = ~gt_occ[:, 1:] & ~gt_occ[:, :-1]
  step = np.where(both, step, np.nan)
  out = np.full(gt.shape[0], np.nan)
  has = both.any(axis=1)
  out[has] = np.nanmedian(step[has], axis=1)
  return out


def _distance(query_points, gt) -> np.ndarray:
  """[N, T] frame distance |t - t_query|."""
  t_q = np.round(query_points[:, 0]).astype(int)
  return np.abs(np.arange(gt.shape[1])[None] - t_q[:, None])


def _in_range(x, lo, hi):
  return (x >= lo) & (x < hi)


def _median(x):
  return np.median(x) if x.size else np.nan


def _mean(x):
  return x.mean() if x.size else np.nan


def _pool(items, select):
  """Pooled over videos, where select(q, gt, gt_occ, size) -> [N, T] bool: the end-point errors
  (px at 256x256) and false-occlusion flags of visible points, the missed flags of occluded ones."""
  errs, false_occ, missed = [], [], []
  for q, gt, gt_occ, pred, occ, size in items:
    sel = select(q, gt, gt_occ, size)
    scale = np.array([256 / size[1], 256 / size[0]])
    errs.append(np.linalg.norm((pred - gt) * scale, axis=-1)[sel & ~gt_occ])
    false_occ.append(occ[sel & ~gt_occ])
    missed.append(~occ[sel & gt_occ])
  return tuple(np.concatenate(x) for x in (errs, false_occ, missed))


def breakdown(query_points, gt, gt_occ, pred, pred_occ, size) -> dict:
  """Per distance bucket: err / false_occ / missed (see the module docstring)."""
  t_q = np.round(query_points[:, 0]).astype(int)
  dist = np.abs(np.arange(gt.shape[1])[None] - t_q[:, None])
  scale = np.array([256 / size[1], 256 / size[0]])
  err = np.linalg.norm((pred - gt) * scale, axis=-1)
  out = {}
  for lo, hi in BUCKETS:
    sel = (dist >= lo) & (dist <= hi)
    vis, occ = sel & ~gt_occ, sel & gt_occ
    out[f'{lo}-{hi}'] = {
        'n_vis': int(vis.sum()), 'n_occ': int(occ.sum()),
        'err': float(np.median(err[vis])) if vis.any() else float('nan'),
        'false_occ': float(pred_occ[vis].mean()) if vis.any() else float('nan'),
        'missed': float((~pred_occ[occ]).mean()) if occ.any() else float('nan')}
  return out


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--eval_out', required=True)
  parser.add_argument('--config', default='cpu_quality')
  parser.add_argument('--set', dest='overrides', action='append', default=[])
  parser.add_argument('--query_mode', default='strided')
  parser.add_argument('--json', default=None)
  parser.add_argument('--reuse', action='store_true',
                      help='score the tracks_diagnose.npz of an earlier call (no re-tracking)')
  args = parser.parse_args(argv)
  config = load_config(args.config, args.overrides)
  rows, agg = {}, {'omnimotion': [], 'chained': []}
  for workdir in sorted(Path(args.eval_out, 'videos').glob('*/run_*')):
    if (not (workdir / workdir_lib.GT).exists()
        or not (workdir / workdir_lib.CHECKPOINTS).is_dir()):
      continue
    name = workdir.parent.name
    with np.load(workdir / workdir_lib.GT) as f:
      q, gt, gt_occ = f['query_points'], f['target_points'], f['occluded']
    seq = workdir_lib.load_sequence(workdir)
    size = tuple(seq.meta.get('input_size', seq.size))
    out = workdir / 'tracks_diagnose.npz'
    if not (args.reuse and out.exists()):
      with progress.quiet():
        out = pipeline.track_stage(config, workdir, queries=q, out=out)
    tracked = workdir_lib.read_tracks(out)  # Input-video px.
    om, om_occ = tracked['tracks'], tracked['occluded']
    sx, sy = workdir_lib.input_scale(seq)
    ch, ch_occ = baselines.chained_flow_tracks(seq, store.rescale_tyx(q, sx, sy),
                                               cycle_threshold=config.data.cycle_threshold)
    ch = store.rescale_xy(ch, 1 / sx, 1 / sy)
    rows[name] = {}
    for tracker, (pred, occ) in {'omnimotion': (om, om_occ), 'chained': (ch, ch_occ)}.items():
      metrics = evaluate.score(q, gt, gt_occ, pred, occ, size, args.query_mode)
      rows[name][tracker] = {'metrics': metrics,
                             'by_distance': breakdown(q, gt, gt_occ, pred, occ, size)}
      agg[tracker].append((q, gt, gt_occ, pred, occ, size))
    m = {t: rows[name][t]['metrics'] for t in rows[name]}
    print(f'{name:16s} ' + '  '.join(
        f'{t}: AJ {100 * v["average_jaccard"]:5.1f} d {100 * v["average_pts_within_thresh"]:5.1f}'
        f' OA {100 * v["occlusion_accuracy"]:5.1f} TC {v["temporal_coherence"]:.2f}'
        for t, v in m.items()), flush=True)
  print('\nmean over videos:')
  for tracker in agg:
    keys = ('average_jaccard', 'average_pts_within_thresh', 'occlusion_accuracy',
            'temporal_coherence')
    means = {k: np.mean([rows[n][tracker]['metrics'][k] for n in rows]) for k in keys}
    print(f'  {tracker}: AJ {100 * means[keys[0]]:.1f} d {100 * means[keys[1]]:.1f} '
          f'OA {100 * means[keys[2]]:.1f} TC {means[keys[3]]:.3f}')
  print('\nby distance from the query frame (all videos pooled): err px / false occ / missed occ')
  for tracker, items in agg.items():
    cells = []
    for lo, hi in BUCKETS:
      e, fo, mo = _pool(items, lambda q, gt, gt_occ, size: _in_range(_distance(q, gt), lo, hi + 1))
      cells.append(f'{lo}-{hi}: {_median(e):.1f} / {100 * _mean(fo):.0f} % / '
                   f'{100 * _mean(mo):.0f} %')
    print(f'  {tracker:10s} ' + ' | '.join(cells))
  print('\nby speed of the ground-truth point (all videos pooled): points / err px / false occ')
  for tracker, items in agg.items():
    cells = []
    for label, lo, hi in SPEEDS:
      pick = lambda q, gt, gt_occ, size: (_in_range(point_speed(gt, gt_occ, size), lo, hi)[:, None]
                                          & (_distance(q, gt) > 0))
      e, fo, _ = _pool(items, pick)
      npts = sum(int(_in_range(point_speed(gt, o, size), lo, hi).sum())
                 for _, gt, o, _, _, size in items)
      cells.append(f'{label}: {npts} / {_median(e):.1f} / {100 * _mean(fo):.0f} %')
    print(f'  {tracker:10s} ' + ' | '.join(cells))
  if args.json:
    Path(args.json).write_text(json.dumps(rows, indent=1))
  return 0


if __name__ == '__main__':
  sys.exit(main())
