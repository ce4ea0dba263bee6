"""Preprocessing cost (time, bytes, memory) per pair plan for N = 50, 100, 250 frames at 256x256.

Each video is a generated layered synthetic clip (omnimotion_jax.data.synthetic.make_video: photo
textures from skimage.data moving over a panning photo background), saved as PNG frames: the
benchmark times the file path a user's frame folder takes (the 'load' stage decodes them). Every
(N, plan) case runs the real entry point, `omnimotion_jax.pipeline.preprocess_stage(...)` with
configs/default.py's data section and flow_backend='dis', in a fresh subprocess (so peak memory
is per case).

Cases whose stored pairs exceed --max-run-pairs (the exhaustive plan beyond N = 50: 9,900 pairs
at N = 100 need ~8 GB of RAM and ~2.8 GB of disk, 62,250 at N = 250 need ~17 GB of disk) are not
run: their time is estimated from the per-unit costs measured on the largest exhaustive case that
ran (s per direct flow, per filtered pair, per chain step, per written byte) and marked
"estimated": true. Bytes are exact in every case (pairs.store_bytes; equal to the file size up to
the .npz headers, checked on the cases that ran).

Usage:
  python benchmarks/preprocess.py          # writes benchmarks/results/preprocess.json, prints a table
  python benchmarks/preprocess.py --frames 50 --plans banded --out /tmp/pre.json  # a quick subset
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from omnimotion_jax import progress
from omnimotion_jax import workdir as workdir_lib
from omnimotion_jax.config import load_config
from omnimotion_jax.data import pairs as pairs_lib
from omnimotion_jax.data import synthetic

RESULTS = Path(__file__).parent / 'results' / 'preprocess.json'
SIZE = 256  # px, square frames (TAP-Vid resolution)
SEED = 0
DEFAULT_FRAMES = (50, 100, 250)
DEFAULT_MAX_RUN_PAIRS = 3000
STORE_LIMIT_BYTES = 10**9  # the project's budget for N = 250 with the default plan


def chain_steps(pairs: np.ndarray, num_frames: int) -> int:
  """Chain steps filtering.chain_flows takes for a plan (one per start, direction and frame)."""
  steps = 0
  for step in (1, -1):
    for i in range(num_frames):
      gaps = (pairs[pairs[:, 0] == i, 1] - i) * step
      gaps = gaps[gaps >= 2]
      if len(gaps):
        steps += int(gaps.max())
  return steps


def run_case(frames_dir: str, workdir: str, plan: str) -> dict:
  """Child process: preprocess one case and return its report plus peak RSS."""
  from omnimotion_jax import pipeline  # pylint: disable=import-outside-toplevel
  config = load_config('default')
  config.data.pair_plan = plan
  config.data.flow_backend = 'dis'
  with progress.quiet():
    path = pipeline.preprocess_stage(frames_dir, workdir, config)
  report = json.loads((Path(path).parent / workdir_lib.PREPROCESS).read_text())
  report['peak_rss_mb'] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
  return report


def make_frames(num_frames: int, folder: Path) -> None:
  sample = synthetic.make_video(SEED, num_frames, SIZE, SIZE, num_tracks=16)
  folder.mkdir(parents=True)
  for t, frame in enumerate(sample['video']):
    Image.fromarray(frame).save(folder / f'{t:05d}.png')


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--frames', type=int, nargs='+', default=list(DEFAULT_FRAMES))
  parser.add_argument('--plans', nargs='+', default=['banded', 'exhaustive'],
                      choices=pairs_lib.PLANS)
  parser.add_argument('--max-run-pairs', type=int, default=DEFAULT_MAX_RUN_PAIRS)
  parser.add_argument('--out', type=Path, default=RESULTS)
  parser.add_argument('--case', nargs=3, metavar=('FRAMES_DIR', 'WORKDIR', 'PLAN'),
                      help=argparse.SUPPRESS)  # internal: run one case in this process
  args = parser.parse_args()
  if args.case:
    print(json.dumps(run_case(*args.case)))
    return

  cfg = load_config('default').data
  rows = []
  unit_costs = None  # from the largest exhaustive case that ran
  with tempfile.TemporaryDirectory(prefix='omnimotion_bench_') as tmp:
    for num_frames in sorted(args.frames):
      frames_dir = Path(tmp) / f'video_{num_frames}'
      make_frames(num_frames, frames_dir)
      for plan_name in args.plans:
        plan = pairs_lib.make_plan(plan_name, num_frames, cfg.dense_gap, cfg.long_stride)
        row = {'num_frames': num_frames, 'plan': plan_name, 'size_hw': [SIZE, SIZE],
               'stored_pairs': len(plan.pairs), 'direct_flows': len(plan.direct),
               'pairs_per_frame': round(len(plan.pairs) / num_frames, 2),
               'chain_steps': chain_steps(plan.pairs, num_frames),
               'store_bytes': pairs_lib.store_bytes(len(plan.pairs), num_frames, SIZE, SIZE)}
        if len(plan.pairs) <= args.max_run_pairs:
          workdir = Path(tmp) / f'work_{num_frames}_{plan_name}'
          out = subprocess.run([sys.executable, __file__, '--case', str(frames_dir),
                                str(workdir), plan_name], check=True, capture_output=True,
                               text=True)
          report = json.loads(out.stdout.strip().splitlines()[-1])
          row.update(estimated=False, seconds=report['timings_s'],
                     file_bytes=report['bytes']['store'], peak_rss_mb=report['peak_rss_mb'],
                     valid_fraction_per_gap=report['valid_fraction_per_gap'])
          if plan_name == 'exhaustive':
            timings = report['timings_s']
            unit_costs = {'load_per_frame': timings['load'] / num_frames,
                          'flow_per_direct': timings['flow'] / len(plan.direct),
                          'filter_per_pair': timings['filter'] / len(plan.pairs),
                          'chain_per_step': timings['chain'] / max(row['chain_steps'], 1),
                          'count_write_per_byte': (timings['count'] + timings['write'])
                                                  / report['bytes']['store']}
          for path in workdir.glob('*'):
            path.unlink()  # free the disk before the next case
        else:
          row['estimated'] = True
        rows.append(row)
        print(f'done N={num_frames} {plan_name}', file=sys.stderr, flush=True)

  for row in rows:
    if row['estimated'] and unit_costs is not None:
      seconds = {'load': unit_costs['load_per_frame'] * row['num_frames'],
                 'flow': unit_costs['flow_per_direct'] * row['direct_flows'],
                 'filter': unit_costs['filter_per_pair'] * row['stored_pairs'],
                 'chain': unit_costs['chain_per_step'] * row['chain_steps'],
                 'count_write': unit_costs['count_write_per_byte'] * row['store_bytes']}
      seconds['total'] = sum(seconds.values())
      row['seconds'] = {k: round(v, 1) for k, v in seconds.items()}
  result = {
      'video': f'omnimotion_jax.data.synthetic.make_video(seed={SEED}), {SIZE}x{SIZE}, PNG frames',
      'config': 'configs/default.py data section, flow_backend=dis, dis_preset=' + cfg.dis_preset,
      'machine_note': '2 shared CPU cores; timings vary by ~20% with other load',
      'store_limit_bytes_n250_default': STORE_LIMIT_BYTES,
      'unit_costs_s': unit_costs, 'cases': rows}
  args.out.parent.mkdir(parents=True, exist_ok=True)
  args.out.write_text(json.dumps(result, indent=2) + '\n')

  print(f'{"N":>4s} {"plan":11s} {"pairs":>6s} {"/frame":>6s} {"flows":>6s} {"steps":>6s} '
        f'{"store MB":>9s} {"total s":>8s} {"flow":>6s} {"filter":>6s} {"chain":>6s} '
        f'{"RSS MB":>7s}  note')
  for row in rows:
    s = row.get('seconds', {})
    print(f'{row["num_frames"]:4d} {row["plan"]:11s} {row["stored_pairs"]:6d} '
          f'{row["pairs_per_frame"]:6.1f} {row["direct_flows"]:6d} {row["chain_steps"]:6d} '
          f'{row["store_bytes"] / 1e6:9.1f} {s.get("total", float("nan")):8.1f} '
          f'{s.get("flow", float("nan")):6.1f} {s.get("filter", float("nan")):6.1f} '
          f'{s.get("chain", float("nan")):6.1f} {row.get("peak_rss_mb", float("nan")):7.0f}  '
          f'{"estimated" if row["estimated"] else "measured"}')
  print(f'wrote {args.out}')


if __name__ == '__main__':
  main()
