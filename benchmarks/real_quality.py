"""Tracking quality on real video with ground truth: OmniMotion vs chained flow vs direct flow.

Two suites, each run end to end from the data folder's path (nothing from it is copied into the
project):

  davis32    TAP-Vid-DAVIS videos cut to 32 frames (a folder with <video>/*.jpg, gt.npz and the
             make_pkl.py that writes the official tapvid_davis.pkl). The pickle and a TFDS data
             dir are built under --workroot, then the videos run through exactly the code of
             `omnimotion-jax eval --dataset tapvid_davis` (evaluation/suite.run_evaluation, with
             --workers), strided queries, TapNet's metrics plus TC. --resolution 256x256 is the
             TAP-Vid protocol; --resolution full runs at the native 854x480 and scales the
             predictions to 256x256 for scoring (TapNet's rule for full-resolution trackers).
  endpoints  the same videos at full length (a folder with <video>/*.jpg and endpoints.npz: the
             frame-0 queries and their ground truth on the LAST frame). Frames are resized to
             256x256 as TapNet resizes them; the three trackers track the queries; scored on the
             last frame at 256x256: median end-point error and <delta^x_avg (1, 2, 4, 8, 16 px)
             over the visible end points, and the occlusion accuracy over all queries.

Prints a markdown table and writes JSON (per video, means, wins, wall time per video, the whole
resolved config). Re-running resumes: finished videos are skipped.

  .venv/bin/python benchmarks/real_quality.py davis32 --split /path/to/tapvid_davis32_dev \
      --config cpu_real --workers 2 --json benchmarks/results/real/davis32_256_cpu_real.json
  .venv/bin/python benchmarks/real_quality.py davis32 --split /path/to/tapvid_davis32_dev \
      --resolution full --config cpu_real --workers 2
  .venv/bin/python benchmarks/real_quality.py endpoints \
      --split /path/to/tapvid_davis_full_dev --config cpu_real --workers 2
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from omnimotion_jax import pipeline  # noqa: E402
from omnimotion_jax import progress  # noqa: E402
from omnimotion_jax.config import config_hash, load_config  # noqa: E402
from omnimotion_jax.evaluation import score as evaluate  # noqa: E402
from omnimotion_jax.evaluation import suite as evaluator  # noqa: E402
from omnimotion_jax.evaluation import tapvid_files  # noqa: E402
from omnimotion_jax.evaluation import workers  # noqa: E402

TRACKERS = ('omnimotion', 'chained', 'direct')
THRESHOLDS = (1, 2, 4, 8, 16)
METRIC_SIZE = 256


# ------------------------------------------------------------------------------------------------
# TAP-Vid-DAVIS (32 frames) through the evaluator.

def davis32(args, config) -> dict:
  split = Path(args.split)
  manual = Path(args.workroot) / 'manual'
  if not (manual / tapvid_files.DAVIS_FILE).exists():
    # The split's own script writes the official layout.
    subprocess.run([sys.executable, str(split / 'make_pkl.py'), str(manual)], check=True)
  # Keyed by the model's config only: new `track` settings re-track the trained models.
  out = Path(args.workroot) / f'davis32_{args.resolution}_{evaluator.model_hash(config)}'
  label = ' '.join([args.config] + [f'--set {item}' for item in args.overrides])
  start = time.time()
  with progress.quiet():
    summary = evaluator.run_evaluation(
        'tapvid_davis', 'strided', config, manual, out, data_dir=Path(args.workroot) / 'tfds',
        videos=args.videos, resolution=args.resolution, config_label=label,
        workers=args.workers)
  videos = {}
  for result in summary['videos'].values():
    metrics = result['metrics']
    videos[result['video_id']] = {
        **{t: {k: metrics[t][k] for k in evaluate.HEADLINE} for t in TRACKERS if t in metrics},
        'wall_s': result['wall_s'], 'num_queries': result['num_queries']}
  means = {t: {k: v for k, v in m.items() if k != 'num_videos'}
           for t, m in summary['means'].items()}
  return {'suite': 'davis32', 'resolution': args.resolution, 'eval_out': str(out),
          'summary_md': summary['summary_path'], 'videos': videos, 'mean': means,
          'invocation_s': time.time() - start}


# ------------------------------------------------------------------------------------------------
# Full length, end points on the last frame.

def endpoint_metrics(pred_xy, pred_occ, end_xy, end_visible) -> dict:
  """Last-frame scores at 256x256: all arrays at 256x256 px; pred_occ / end_visible bool [Q]."""
  err = np.linalg.norm(pred_xy - end_xy, axis=-1)[end_visible]
  if not err.size:  # No visible end point (e.g. libby): only the occlusion accuracy is defined.
    position = {'median_epe': float('nan'), 'average_pts_within_thresh': float('nan'),
                'visible_predicted_occluded': float('nan')}
  else:
    position = {'median_epe': float(np.median(err)),
                'average_pts_within_thresh': float(np.mean([np.mean(err < d) for d in THRESHOLDS])),
                'visible_predicted_occluded': float(np.mean(pred_occ[end_visible]))}
  return {**position, 'occlusion_accuracy': float(np.mean(pred_occ == ~end_visible)),
          'num_queries': int(len(end_visible)), 'num_visible': int(end_visible.sum()),
          'errors': err.tolist(), 'predicted_occluded': pred_occ.tolist()}


def _endpoint_job(split: str, name: str, config, root: str) -> tuple[str, dict]:
  """One full-length video end to end (also a worker's entry point)."""
  import mediapy  # pylint: disable=import-outside-toplevel
  from PIL import Image  # pylint: disable=import-outside-toplevel
  workdir = Path(root) / name
  done = workdir / 'endpoints.json'
  if done.exists():
    result = json.loads(done.read_text())
    if result.get('config_hash') == config_hash(config):
      return name, result
  start = time.time()
  files = sorted(Path(split, name).glob('*.jpg'))
  raw = np.stack([np.asarray(Image.open(f).convert('RGB')) for f in files])
  height, width = raw.shape[1:3]
  # TapNet's reader: mediapy (PIL Lanczos) to 256x256; points scale by 256 / (W, H).
  video = mediapy.resize_video(raw, (METRIC_SIZE, METRIC_SIZE))
  with np.load(Path(split) / 'endpoints.npz') as f:
    queries = f[f'{name}/query_points'].astype(np.float64)
    end_xy = f[f'{name}/end_xy'].astype(np.float64)
    end_visible = f[f'{name}/end_visible'].astype(bool)
  scale_xy = np.array([METRIC_SIZE / width, METRIC_SIZE / height])
  queries = np.concatenate([queries[:, :1], queries[:, 1:] * scale_xy[::-1]], 1)
  end_xy = end_xy * scale_xy
  wall = {}
  t0 = time.time()
  pipeline.preprocess_stage(video, workdir, config)  # The frames themselves, no file trip.
  wall['preprocess'] = time.time() - t0
  t0 = time.time()
  pipeline.train_stage(config, workdir)
  wall['train'] = time.time() - t0
  result = {'config_hash': config_hash(config), 'num_frames': int(len(video))}
  for tracker, (tracks, occ, seconds) in evaluate.predict_workdir(
      config, workdir, queries.astype(np.float32), TRACKERS, video=video).items():
    result[tracker] = endpoint_metrics(tracks[:, -1], occ[:, -1], end_xy, end_visible)
    wall[f'track_{tracker}'] = seconds
  wall['total'] = time.time() - start
  result['wall_s'] = {k: round(v, 1) for k, v in wall.items()}
  done.write_text(json.dumps(result, indent=1))
  return name, result


def endpoints(args, config) -> dict:
  split = Path(args.split)
  names = sorted(p.name for p in split.iterdir() if p.is_dir())
  if args.videos:
    names = [n for n in names if n in args.videos.split(',')]
  root = Path(args.workroot) / f'endpoints_{evaluator.model_hash(config)}'
  jobs = [(str(split), name, config, str(root)) for name in names]
  start = time.time()

  def report(item):
    name, r = item
    print(f'  {name} ({r["num_frames"]} frames, {r["wall_s"]["total"]:.0f} s): ' + '  '.join(
        f'{t}: EPE {r[t]["median_epe"]:.1f} d {100 * r[t]["average_pts_within_thresh"]:.1f} '
        f'OA {100 * r[t]["occlusion_accuracy"]:.0f}' for t in TRACKERS), flush=True)

  if args.workers == 1:
    with progress.quiet():
      results = [_endpoint_job(*job) for job in jobs]
    for item in results:
      report(item)
  else:
    results = workers.run_pinned(_endpoint_job, jobs, args.workers, on_result=report)
  videos = dict(results)
  keys = ('median_epe', 'average_pts_within_thresh', 'occlusion_accuracy',
          'visible_predicted_occluded')
  # Mean over the videos where a metric is defined (a video without visible end points has no
  # position score), and pooled over all end points (the split has 5-25 queries per video).
  means = {t: {k: float(np.nanmean([v[t][k] for v in videos.values()])) for k in keys}
           for t in TRACKERS}
  pooled = {}
  for t in TRACKERS:
    err = np.concatenate([np.asarray(v[t]['errors'], float) for v in videos.values()])
    pooled[t] = {'median_epe': float(np.median(err)),
                 'average_pts_within_thresh': float(np.mean([np.mean(err < d)
                                                             for d in THRESHOLDS])),
                 'num_visible': int(err.size)}
  return {'suite': 'endpoints', 'resolution': '256x256', 'videos': videos, 'mean': means,
          'pooled': pooled, 'invocation_s': time.time() - start}


# ------------------------------------------------------------------------------------------------

def davis32_verdict(out: dict) -> dict:
  """The issue's comparison: the best baseline is the better of the chained and direct means
  (AJ); a video is won when OmniMotion's AJ beats both baselines' on it."""
  aj = lambda m: 100 * m['average_jaccard']
  m = out['mean']
  best = max(('chained', 'direct'), key=lambda t: aj(m[t]))
  videos = out['videos'].values()
  return {'best_baseline': best, 'best_baseline_aj': aj(m[best]),
          'aj_vs_best': aj(m['omnimotion']) - aj(m[best]),
          'aj_vs_chained': aj(m['omnimotion']) - aj(m['chained']),
          'wins_vs_both': sum(aj(v['omnimotion']) > max(aj(v['chained']), aj(v['direct']))
                              for v in videos),
          'wins_vs_chained': sum(aj(v['omnimotion']) > aj(v['chained']) for v in videos),
          'max_video_s': max(v['wall_s']['total'] for v in videos)}


def print_table(out: dict) -> None:
  videos = out['videos']
  if out['suite'] == 'davis32':
    print('| video | OmniMotion AJ / <d / OA / TC | chained | direct | AJ vs best of both | s |')
    print('|---|---|---|---|---|---|')
    cell = lambda m: (f'{100 * m["average_jaccard"]:.1f} / {100 * m["average_pts_within_thresh"]:.1f}'
                      f' / {100 * m["occlusion_accuracy"]:.1f} / {m["temporal_coherence"]:.2f}')
    gap = lambda v: 100 * (v['omnimotion']['average_jaccard'] - max(
        v['chained']['average_jaccard'], v['direct']['average_jaccard']))
    for name, v in videos.items():
      print(f'| {name} | {cell(v["omnimotion"])} | {cell(v["chained"])} | {cell(v["direct"])} | '
            f'{gap(v):+.1f} | {v["wall_s"]["total"]:.0f} |')
    m = out['mean']
    best = out['verdict']['best_baseline']
    print(f'| **mean** | {cell(m["omnimotion"])} | {cell(m["chained"])} | {cell(m["direct"])} | '
          f'{out["verdict"]["aj_vs_best"]:+.1f} vs {best} | |')
  else:
    print('| video | frames | OmniMotion EPE / <d / OA | chained | direct | s |')
    print('|---|---|---|---|---|---|')
    cell = lambda m: (f'{m["median_epe"]:.1f} / {100 * m["average_pts_within_thresh"]:.1f} / '
                      f'{100 * m["occlusion_accuracy"]:.0f}')
    for name, v in videos.items():
      print(f'| {name} | {v["num_frames"]} | {cell(v["omnimotion"])} | {cell(v["chained"])} | '
            f'{cell(v["direct"])} | {v["wall_s"]["total"]:.0f} |')
    m = out['mean']
    print(f'| **mean** | | {cell(m["omnimotion"])} | {cell(m["chained"])} | {cell(m["direct"])} | |')


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('suite', choices=('davis32', 'endpoints'))
  parser.add_argument('--split', required=True, help='the data folder (see the module docstring)')
  parser.add_argument('--config', default='cpu_quality')
  parser.add_argument('--set', dest='overrides', action='append', default=[])
  parser.add_argument('--resolution', default='256x256', choices=('256x256', 'full'),
                      help='davis32: the TAP-Vid protocol (256x256) or the native frames (full)')
  parser.add_argument('--videos', default=None, help='comma-separated video names (default all)')
  parser.add_argument('--workers', type=int, default=2,
                      help='videos at a time, one pinned process each (default 2)')
  parser.add_argument('--workroot', default='out/real_quality')
  parser.add_argument('--json', default=None, help='output JSON (default WORKROOT/<suite>.json)')
  args = parser.parse_args(argv)
  config = load_config(args.config, args.overrides)
  start = time.time()
  out = (davis32 if args.suite == 'davis32' else endpoints)(args, config)
  out.update(config=args.config, overrides=args.overrides, config_hash=config_hash(config),
             workers=args.workers, wall_s=time.time() - start, resolved_config=config.to_dict())
  if out['suite'] == 'davis32':
    out['verdict'] = davis32_verdict(out)
  print_table(out)
  if out['suite'] == 'davis32':
    v = out['verdict']
    print(f'OmniMotion AJ {100 * out["mean"]["omnimotion"]["average_jaccard"]:.1f}: '
          f'{v["aj_vs_best"]:+.1f} vs the best baseline ({v["best_baseline"]} '
          f'{v["best_baseline_aj"]:.1f}), {v["aj_vs_chained"]:+.1f} vs chained; ahead of both on '
          f'{v["wins_vs_both"]}/{len(out["videos"])} videos; TC '
          f'{out["mean"]["omnimotion"]["temporal_coherence"]:.3f} vs chained '
          f'{out["mean"]["chained"]["temporal_coherence"]:.3f}; longest video '
          f'{v["max_video_s"] / 60:.1f} min; wall {out["wall_s"] / 60:.1f} min')
  else:
    m = out['mean']
    pts = lambda t: 100 * m[t]['average_pts_within_thresh']
    best = max(('chained', 'direct'), key=pts)
    out['verdict'] = {'best_baseline': best, 'pts_vs_best': pts('omnimotion') - pts(best),
                      'oa_vs_best': 100 * (m['omnimotion']['occlusion_accuracy']
                                           - m[best]['occlusion_accuracy'])}
    pooled = '  '.join(f'{t} {100 * out["pooled"][t]["average_pts_within_thresh"]:.1f}'
                       for t in TRACKERS)
    print(f'end-point <d: OmniMotion {pts("omnimotion"):.1f}, chained {pts("chained"):.1f}, direct '
          f'{pts("direct"):.1f}: {out["verdict"]["pts_vs_best"]:+.1f} vs the best baseline ({best})'
          f' (pooled over end points: {pooled}); last-frame OA '
          + ', '.join(f'{t} {100 * m[t]["occlusion_accuracy"]:.1f}' for t in TRACKERS)
          + f'; wall {out["wall_s"] / 60:.1f} min')
  path = Path(args.json) if args.json else Path(args.workroot) / f'{args.suite}.json'
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(out, indent=1, default=str))
  print(f'json: {path}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
