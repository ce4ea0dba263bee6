"""Tracking quality on the synthetic suite: OmniMotion vs chained flow vs direct flow.

For every video of a synthetic suite (exact ground truth), this runs the real pipeline
(preprocess -> train -> track) with one config, builds the two flow-only baselines from the SAME
store, and scores all three with the TAP-Vid metrics (query mode `strided` by default, at 256x256)
and TC. It prints a table, and writes JSON with per-video results, means, the config and wall
times.

  .venv/bin/python benchmarks/quality.py --config cpu_quality --suite synthetic-v1 \
      --json benchmarks/results/quality_cpu_quality.json

Runs resume: a video whose workdir already has eval.json for this config hash is not redone.

--batch_videos B trains B videos at a time as one vmapped program in this process
(`pipeline.train_many_stage`; their workdirs go to a `_batchB` folder), then tracks and scores
each; compare its table with a one-at-a-time run's (benchmarks/batch.py has the throughput).

--workers W trains W videos at a time, each worker process pinned to its own share of the CPU
cores. On the 2-core CPU, two one-core workers do 1.36x the training steps per second of one
process using both cores (one process: 62.7 ms/step; two: 91-93 ms/step each, cpu_quality on a
40-frame 192x192 video): XLA:CPU keeps two cores only ~1.5x busy within one small step. Each
video's own time grows; the suite's wall time falls. The model, data, seed and steps are the
same, but a one-thread XLA sums in another order, so a worker's run is not bit-identical to a
one-process run (at 100 steps on pan-one-object-slow: AJ 27.0 vs 27.1, TC 0.80 vs 0.65).
"""

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from omnimotion_jax import pipeline  # noqa: E402
from omnimotion_jax import progress as progress_lib  # noqa: E402
from omnimotion_jax import workdir as workdir_lib  # noqa: E402
from omnimotion_jax.config import config_hash, enable_compilation_cache, load_config  # noqa: E402
from omnimotion_jax.data import synthetic  # noqa: E402
from omnimotion_jax.evaluation import score as evaluate  # noqa: E402
from omnimotion_jax.evaluation import workers  # noqa: E402

TRACKERS = ('omnimotion', 'chained', 'direct')


def run_video(sample: dict, workdir: Path, config, query_mode: str,
              train_s: float | None = None) -> dict:
  """One video end to end; train_s: it was already trained (in a batch) in this many seconds."""
  chash = config_hash(config)
  eval_path = workdir / workdir_lib.EVAL
  if eval_path.exists():
    done = json.loads(eval_path.read_text())
    if done.get('config_hash') == chash:
      return done
  video = sample['video']  # The frames themselves (lossless: no file trip, no compression).
  times = {}
  t0 = time.time()
  pipeline.preprocess_stage(video, workdir, config)
  times['preprocess_s'] = time.time() - t0
  t0 = time.time()
  if train_s is None:
    pipeline.train_stage(config, workdir)
  times['train_s'] = time.time() - t0 if train_s is None else train_s
  if query_mode == 'strided':
    queries, group = sample['query_points_strided'], sample['trackgroup_strided']
  else:
    queries, group = sample['query_points_first'], sample['trackgroup_first']
  results = evaluate.evaluate_workdir(
      config, workdir, query_points=queries, target_points=sample['target_points'][group],
      occluded=sample['occluded'][group], query_mode=query_mode, trackers=TRACKERS, video=video)
  results.update(times, config_hash=chash, name=sample['name'],
                 frames=int(sample['video'].shape[0]), size=list(sample['video'].shape[1:3]))
  eval_path.write_text(json.dumps(results, indent=2))
  return results


def _video_job(suite: str, index: int, config_name: str, overrides: list[str], root: str,
               query_mode: str) -> tuple[int, str, dict, float]:
  """One video end to end (also a worker's entry point); returns (index, name, results, s)."""
  start = time.time()
  config = load_config(config_name, overrides)
  sample = synthetic.suite_video(suite, index)
  workdir = Path(root) / f'{index:02d}_{sample["name"]}'
  result = run_video(sample, workdir, config, query_mode)
  return index, sample['name'], result, time.time() - start


def _batch_job(suite: str, indices: list[int], config_name: str, overrides: list[str], root: str,
               query_mode: str) -> list[tuple[int, str, dict, float]]:
  """Several videos trained as one batch (pipeline.train_many_stage), then tracked and scored."""
  start = time.time()
  config = load_config(config_name, overrides)
  samples = [synthetic.suite_video(suite, index) for index in indices]
  workdirs = [Path(root) / f'{i:02d}_{s["name"]}' for i, s in zip(indices, samples)]
  todo = [k for k, w in enumerate(workdirs) if not _is_done(w, config)]
  for k in todo:
    pipeline.preprocess_stage(samples[k]['video'], workdirs[k], config)
  t0 = time.time()
  if todo:
    pipeline.train_many_stage(config, [workdirs[k] for k in todo])
  train_s = (time.time() - t0)
  shared = (time.time() - start) / len(indices)
  out = []
  for index, sample, workdir in zip(indices, samples, workdirs):
    t0 = time.time()
    result = run_video(sample, workdir, config, query_mode, train_s=train_s)
    out.append((index, sample['name'], result, shared + time.time() - t0))
  return out


def _is_done(workdir: Path, config) -> bool:
  path = workdir / workdir_lib.EVAL
  return path.exists() and json.loads(path.read_text()).get('config_hash') == config_hash(config)


def summarize(per_video: list[dict]) -> dict:
  means = {}
  for tracker in TRACKERS:
    means[tracker] = {k: float(np.nanmean([v[tracker][k] for v in per_video]))
                      for k in evaluate.HEADLINE}
  return means


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--config', default='cpu_quality')
  parser.add_argument('--set', dest='overrides', action='append', default=[])
  parser.add_argument('--suite', default='synthetic-v1')
  parser.add_argument('--videos', default=None, help='comma-separated indices (default: all)')
  parser.add_argument('--query_mode', default='strided', choices=('strided', 'first'))
  parser.add_argument('--workroot', default='out/quality', help='folder for per-video workdirs')
  parser.add_argument('--json', default=None, help='output JSON (default: WORKROOT/quality.json)')
  parser.add_argument('--progress', action='store_true',
                      help='progress bars (with --workers 1 only: workers would interleave them)')
  parser.add_argument('--workers', type=int, default=1,
                      help='videos trained at a time, each worker pinned to its own cores '
                           '(2 on the 2-core CPU: 1.36x the suite throughput; default: 1)')
  parser.add_argument('--batch_videos', type=int, default=1,
                      help='videos trained at a time as one vmapped batch in this process '
                           '(train/batch.py; its own workroot folder); default: 1')
  args = parser.parse_args(argv)
  if args.batch_videos < 1 or (args.batch_videos > 1 and args.workers > 1):
    parser.error('--batch_videos must be >= 1, and not combined with --workers.')

  enable_compilation_cache()
  config = load_config(args.config, args.overrides)
  specs = synthetic.SUITES[args.suite]
  indices = range(len(specs)) if args.videos is None else [int(i) for i in args.videos.split(',')]
  root = Path(args.workroot) / f'{args.suite}_{config_hash(config)}'
  if args.batch_videos > 1:  # Not the one-at-a-time runs' folders (their eval.json is reused).
    root = root.with_name(f'{root.name}_batch{args.batch_videos}')
  start = time.time()
  results = {}

  def report(index, name, result, seconds):
    results[index] = result
    row = ' '.join(f'{t}: AJ {100 * result[t]["average_jaccard"]:5.1f} '
                   f'd {100 * result[t]["average_pts_within_thresh"]:5.1f} '
                   f'OA {100 * result[t]["occlusion_accuracy"]:5.1f} '
                   f'TC {result[t]["temporal_coherence"]:.2f}' for t in TRACKERS)
    print(f'[{index}] {name} ({seconds:.0f} s)  {row}', flush=True)

  jobs = [(args.suite, index, args.config, args.overrides, str(root), args.query_mode)
          for index in indices]
  if args.batch_videos > 1:
    with contextlib.nullcontext() if args.progress else progress_lib.quiet():
      for first in range(0, len(indices), args.batch_videos):
        group = list(indices[first:first + args.batch_videos])
        for result in _batch_job(args.suite, group, args.config, args.overrides, str(root),
                                 args.query_mode):
          report(*result)
  elif args.workers == 1:
    with contextlib.nullcontext() if args.progress else progress_lib.quiet():
      for job in jobs:
        report(*_video_job(*job))
  else:
    # Spawned worker processes, each pinned to its own cores (quiet: no interleaved bars).
    workers.run_pinned(_video_job, jobs, args.workers, on_result=lambda r: report(*r))
  per_video = [results[index] for index in indices]
  means = summarize(per_video)
  out = {'suite': args.suite, 'config': args.config, 'overrides': args.overrides,
         'config_hash': config_hash(config), 'query_mode': args.query_mode,
         'workers': args.workers, 'batch_videos': args.batch_videos, 'wall_s': time.time() - start, 'mean': means, 'videos': per_video,
         'resolved_config': config.to_dict()}
  json_path = Path(args.json) if args.json else root / 'quality.json'
  json_path.parent.mkdir(parents=True, exist_ok=True)
  json_path.write_text(json.dumps(out, indent=2, default=str))
  print(evaluate.format_table(means))
  gap = 100 * (means['omnimotion']['average_jaccard'] - means['chained']['average_jaccard'])
  print(f'OmniMotion - chained AJ: {gap:+.1f} points; TC {means["omnimotion"]["temporal_coherence"]:.3f}'
        f' vs {means["chained"]["temporal_coherence"]:.3f}; wall {out["wall_s"] / 60:.1f} min; '
        f'json: {json_path}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
