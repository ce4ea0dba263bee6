"""Train-step speed: compile time, median ms/step, memory and FLOP/s of the real jitted step.

The state and the step are built exactly as `omnimotion_jax.train.loop.fit` builds them
(`train.step.compiled_train_steps`: the pure train step jitted with the state donated), on a
synthetic TrainData of the requested shape (benchmarks/common.py: a real photo under an exactly
known shift, no optical flow). Compilation (lower + compile) is timed separately; then `--warmup`
steps run untimed and `--steps` steps are timed one by one (block_until_ready after each).

Single setting:
  .venv/bin/python benchmarks/train_step.py --config cpu_tiny --frames 20 --size 64 64 \
      --steps 10 --warmup 2 --json /tmp/tiny.json
  .venv/bin/python benchmarks/train_step.py --config paper --set train.sampling.num_pairs=4 \
      --set train.sampling.num_points=128 --set model.num_samples=16 --frames 20 \
      --size 128 128  # 'small'

Suite (every setting in its own subprocess, so peak RSS is per setting):
  .venv/bin/python benchmarks/train_step.py --suite                 # everything (hours on CPU)
  .venv/bin/python benchmarks/train_step.py --suite --only cpu_tiny  # a subset
  .venv/bin/python benchmarks/train_step.py --suite --only ref-      # the three reference rows

Reference rows (reference PyTorch, 2-core CPU, 20 frames at 128 x 128;
the project's shared reference notes, reference-cpu-timing.md): default 46.2 s/step, paper 43.9 s/step, small
(paper with 4 pairs x 128 points, 16 samples) 2.10 s/step. When a run's resolved model config,
pairs, points and video shape equal one of them, the JSON gets `reference_s_per_step`,
`target_ms_per_step` (= reference / 3) and `target_met`.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402
import flops as flops_lib  # noqa: E402

DEFAULT_STEPS = 20
DEFAULT_WARMUP = 3
DEFAULT_FRAMES = 20
DEFAULT_SIZE = (128, 128)
PROJECTED_ITERATIONS = 100_000
SPEEDUP_TARGET = 3.0  # The project's goal: 3x faster than the reference on the same machine.
SECONDS_PER_HOUR = 3600.0
MATMUL_PEAK_SIZE = 2048   # Square fp32 matmul used to measure the machine's achievable FLOP/s.
MATMUL_PEAK_REPEATS = 5
SUITE_JSON = common.RESULTS_DIR / 'train_step_suite.json'
SUITE_CONFIGS = ('cpu_tiny', 'default', 'paper')
SUITE_FRAMES = (50, 100, 250)
SUITE_SIZE = (128, 128)

# The reference's measured CPU timings (reference-cpu-timing.md), all at 20 frames of 128 x 128.
# remat_chunks is not part of the reference's setting (it only trades memory for a forward): the
# small batch fits in memory and runs faster without it (1.59 s vs 1.96 s/step with 16 chunks).
SMALL_OVERRIDES = ('train.sampling.num_pairs=4', 'train.sampling.num_points=128',
                   'model.num_samples=16', 'train.remat_chunks=1')
REFERENCE_ROWS = (
    {'name': 'default', 'config': 'default', 'overrides': (), 's_per_step': 46.2,
     'peak_memory_gb': 15.9},
    {'name': 'paper', 'config': 'paper', 'overrides': (), 's_per_step': 43.9,
     'peak_memory_gb': 14.4},
    {'name': 'small', 'config': 'paper', 'overrides': SMALL_OVERRIDES, 's_per_step': 2.10,
     'peak_memory_gb': 2.6},
)
REFERENCE_FRAMES = 20
REFERENCE_SIZE = (128, 128)
# Train fields (section, name) that change the work of a step (the model section is compared
# whole).
WORK_TRAIN_FIELDS = (('sampling', 'num_pairs'), ('sampling', 'num_points'),
                     ('loss', 'smooth_points_fraction'))


def reference_match(config, frames: int, size: tuple[int, int]) -> dict | None:
  """The reference row whose setting this run reproduces, if any."""
  from omnimotion_jax.config import load_config  # pylint: disable=g-import-not-at-top
  if frames != REFERENCE_FRAMES or tuple(size) != REFERENCE_SIZE:
    return None
  work = lambda c: (c.model.to_dict(), tuple(c.train[s][f] for s, f in WORK_TRAIN_FIELDS))
  mine = work(config)
  for row in REFERENCE_ROWS:
    if work(load_config(row['config'], list(row['overrides']))) == mine:
      return row
  return None


def matmul_peak_flops() -> float:
  """Achievable fp32 matmul FLOP/s of the default device (best of a few square matmuls)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  n = MATMUL_PEAK_SIZE
  a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()
  best = float('inf')
  for _ in range(MATMUL_PEAK_REPEATS):
    start = time.perf_counter()
    f(a).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return 2.0 * n ** 3 / best


def _hours(seconds: float) -> str:
  if seconds >= 2 * 24 * SECONDS_PER_HOUR:
    return f'{seconds / (24 * SECONDS_PER_HOUR):.1f} d'
  return f'{seconds / SECONDS_PER_HOUR:.1f} h'


def run_one(config_name: str, overrides: list[str], frames: int, size: tuple[int, int],
            steps: int, warmup: int, measure_peak: bool, label: str | None = None) -> dict:
  """Builds, compiles and times one setting in this process; returns the JSON row."""
  import jax  # pylint: disable=g-import-not-at-top
  from omnimotion_jax.model import model as model_lib  # pylint: disable=g-import-not-at-top
  from omnimotion_jax.config import config_hash, load_config  # pylint: disable=g-import-not-at-top

  config = load_config(config_name, overrides)
  height, width = size
  info = common.device_info()

  start = time.perf_counter()
  step_fn, state, data, key = flops_lib.build_train_step(config, frames, height, width)
  jax.block_until_ready((state, data))
  setup_s = time.perf_counter() - start
  rss_after_setup = common.host_peak_rss_mb()
  num_params = model_lib.count_params(state.params)

  start = time.perf_counter()
  lowered = step_fn.lower(state, data, key)
  lower_s = time.perf_counter() - start
  start = time.perf_counter()
  compiled = lowered.compile()
  compile_only_s = time.perf_counter() - start
  rss_after_compile = common.host_peak_rss_mb()
  cost = common.xla_cost(compiled)

  for _ in range(warmup):
    state, metrics = compiled(state, data, key)
    jax.block_until_ready((state, metrics))
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    state, metrics = compiled(state, data, key)
    jax.block_until_ready((state, metrics))
    times.append(time.perf_counter() - start)
  metrics = jax.device_get(metrics)
  memory = common.peak_memory()

  median_s = statistics.median(times)
  analytic = flops_lib.train_step_flops(config)
  xla_flops = cost.get('flops')
  row = {
      'name': label or config_name,
      'config_name': config_name,
      'overrides': list(overrides),
      'config_hash': config_hash(config),
      'frames': frames, 'size_hw': [height, width],
      'num_stored_pairs': int(data.pairs.shape[0]),
      'train_data_mb': round(common.train_data_bytes(data) / common.BYTES_PER_MB, 1),
      'num_params': num_params,
      'device': common.device_label(info), 'device_info': info,
      'jax_version': info['jax_version'],
      'setup_s': round(setup_s, 3),
      'lower_s': round(lower_s, 3), 'compile_only_s': round(compile_only_s, 3),
      'compile_s': round(lower_s + compile_only_s, 3),
      'warmup_steps': warmup, 'timed_steps': steps,
      'ms_per_step_median': 1000 * median_s,
      'ms_per_step_mean': 1000 * statistics.fmean(times),
      'ms_per_step_min': 1000 * min(times),
      'ms_per_step_max': 1000 * max(times),
      'it_per_s': 1.0 / median_s,
      'projected_100k_s': PROJECTED_ITERATIONS * median_s,
      'projected_100k_h': PROJECTED_ITERATIONS * median_s / SECONDS_PER_HOUR,
      **memory,
      'host_peak_rss_after_setup_mb': round(rss_after_setup, 1),
      'host_peak_rss_after_compile_mb': round(rss_after_compile, 1),
      'flops_per_step': analytic['total'],
      'flops_per_step_analytic': analytic['total'],
      'flops_per_step_xla': xla_flops,
      'xla_over_analytic': (xla_flops / analytic['total']) if xla_flops else None,
      'flops_breakdown': analytic,
      'achieved_flops_per_s': analytic['total'] / median_s,
      'achieved_flops_per_s_xla': (xla_flops / median_s) if xla_flops else None,
      'final_loss': float(metrics['loss']), 'num_skipped': int(metrics['num_skipped']),
      'config': config.to_dict(),
  }
  if measure_peak:
    peak = matmul_peak_flops()
    row['matmul_peak_flops_per_s'] = peak
    row['fraction_of_matmul_peak'] = row['achieved_flops_per_s'] / peak
  ref = reference_match(config, frames, size)
  if ref is not None:
    target_ms = 1000 * ref['s_per_step'] / SPEEDUP_TARGET
    row.update({'reference_setting': ref['name'], 'reference_s_per_step': ref['s_per_step'],
                'reference_peak_memory_gb': ref['peak_memory_gb'],
                'target_ms_per_step': target_ms,
                'speedup_vs_reference': 1000 * ref['s_per_step'] / row['ms_per_step_median'],
                'target_met': bool(row['ms_per_step_median'] <= target_ms)})
  else:
    row.update({'reference_setting': None, 'reference_s_per_step': None,
                'target_ms_per_step': None, 'target_met': None})
  return row


# ------------------------------------------------------------------------------------------------
# Output.

TABLE_HEADER = ('| setting | frames | size | device | compile s | ms/step (median) | it/s | '
                '100k iters | peak MB | GFLOP/step (analytic / XLA) | GFLOP/s | % matmul peak | '
                'reference s/step | target ms | met |')
TABLE_RULE = '|' + '|'.join(['---'] * (TABLE_HEADER.count('|') - 1)) + '|'


def _num(x, fmt: str, missing: str = '-') -> str:
  return missing if x is None else format(x, fmt)


def table_row(r: dict) -> str:
  """One markdown table row of a result."""
  xla = r.get('flops_per_step_xla')
  frac = r.get('fraction_of_matmul_peak')
  return ('| ' + ' | '.join([
      r['name'], str(r['frames']), f"{r['size_hw'][0]}x{r['size_hw'][1]}", r['device'],
      f"{r['compile_s']:.1f}", f"{r['ms_per_step_median']:.1f}", f"{r['it_per_s']:.2f}",
      _hours(r['projected_100k_s']), f"{r['peak_memory_mb']:.0f}",
      f"{r['flops_per_step_analytic'] / 1e9:.2f} / " + _num(xla and xla / 1e9, '.2f'),
      f"{r['achieved_flops_per_s'] / 1e9:.1f}", _num(frac and 100 * frac, '.1f'),
      _num(r.get('reference_s_per_step'), '.2f'), _num(r.get('target_ms_per_step'), '.0f'),
      {True: 'yes', False: 'no', None: '-'}[r.get('target_met')],
  ]) + ' |')


def print_line(r: dict) -> None:
  """The one-line summary of a single run."""
  extra = ''
  if r.get('reference_s_per_step') is not None:
    extra = (f"  ref {r['reference_s_per_step']:.2f} s -> target {r['target_ms_per_step']:.0f} ms: "
             f"{'MET' if r['target_met'] else 'not met'} ({r['speedup_vs_reference']:.2f}x)")
  print(f"{r['name']:>10s} N={r['frames']:<4d} {r['size_hw'][0]}x{r['size_hw'][1]}  "
        f"compile {r['compile_s']:6.1f} s  {r['ms_per_step_median']:9.1f} ms/step  "
        f"{r['it_per_s']:7.2f} it/s  100k: {_hours(r['projected_100k_s']):>8s}  "
        f"peak {r['peak_memory_mb']:7.0f} MB  {r['flops_per_step_analytic'] / 1e9:8.2f} GFLOP "
        f"(XLA {_num(r['flops_per_step_xla'] and r['flops_per_step_xla'] / 1e9, '.2f')})  "
        f"{r['achieved_flops_per_s'] / 1e9:6.1f} GFLOP/s{extra}")


# ------------------------------------------------------------------------------------------------
# Suite.


def suite_settings() -> list[dict]:
  """The suite's settings: {cpu_tiny, default, paper} x N in {50, 100, 250} at 128 x 128, and the
  three reference rows at 20 frames of 128 x 128."""
  rows = []
  for ref in REFERENCE_ROWS:
    rows.append({'name': f"ref-{ref['name']}-N{REFERENCE_FRAMES}", 'config': ref['config'],
                 'overrides': list(ref['overrides']), 'frames': REFERENCE_FRAMES,
                 'size': REFERENCE_SIZE})
  for cfg in SUITE_CONFIGS:
    for n in SUITE_FRAMES:
      rows.append({'name': f'{cfg}-N{n}', 'config': cfg, 'overrides': [], 'frames': n,
                   'size': SUITE_SIZE})
  return rows


def run_suite(args) -> None:
  settings = suite_settings()
  if args.only:
    wanted = [w for item in args.only for w in item.split(',') if w]
    settings = [s for s in settings if any(w in s['name'] for w in wanted)]
  if not settings:
    raise SystemExit(f'--only {args.only}: no suite setting matches; names: '
                     + ', '.join(s['name'] for s in suite_settings()))
  out = args.json or SUITE_JSON
  script = Path(__file__).resolve()
  done = []
  for s in settings:
    with tempfile.TemporaryDirectory() as tmp:
      row_path = Path(tmp) / 'row.json'
      cmd = [sys.executable, str(script), '--config', s['config'], '--frames', str(s['frames']),
             '--size', str(s['size'][0]), str(s['size'][1]), '--steps', str(args.steps),
             '--warmup', str(args.warmup), '--label', s['name'], '--json', str(row_path)]
      for o in s['overrides'] + list(args.set):
        cmd += ['--set', o]
      if args.no_matmul_peak:
        cmd.append('--no-matmul-peak')
      print(f"[suite] {s['name']}: {' '.join(cmd[1:])}", flush=True)
      try:
        proc = subprocess.run(cmd, timeout=args.timeout, check=False)
        failed = proc.returncode != 0 or not row_path.exists()
        reason = f'exit status {proc.returncode}'
      except subprocess.TimeoutExpired:
        failed, reason = True, f'timed out after {args.timeout} s'
      if failed:
        row = {'name': s['name'], 'config_name': s['config'], 'frames': s['frames'],
               'size_hw': list(s['size']), 'error': reason}
        print(f"[suite] {s['name']} FAILED ({reason})", flush=True)
      else:
        row = json.loads(row_path.read_text())
        done.append(row)
    common.append_json_row(out, row)
  print(f'\nresults appended to {out}\n')
  print(TABLE_HEADER)
  print(TABLE_RULE)
  for r in done:
    print(table_row(r))


def main() -> None:
  parser = argparse.ArgumentParser(
      description='Train-step benchmark: compile time, median ms/step, it/s, projected 100k-step '
                  'wall time, peak memory, FLOPs/step (analytic and XLA) and achieved FLOP/s.')
  parser.add_argument('--config', default='cpu_tiny',
                      help='config name (configs/NAME.py) or path (default: %(default)s)')
  parser.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                      help='config override, e.g. --set train.sampling.num_pairs=4 (repeatable; '
                           'in --suite mode applied to every setting)')
  parser.add_argument('--steps', type=int, default=DEFAULT_STEPS,
                      help='timed steps; the median is reported (default: %(default)s)')
  parser.add_argument('--warmup', type=int, default=DEFAULT_WARMUP,
                      help='untimed steps after compilation (default: %(default)s)')
  parser.add_argument('--frames', type=int, default=DEFAULT_FRAMES,
                      help='frames N of the synthetic video (default: %(default)s)')
  parser.add_argument('--size', type=int, nargs=2, default=DEFAULT_SIZE, metavar=('H', 'W'),
                      help='frame height and width in px (default: %(default)s)')
  parser.add_argument('--json', type=Path, default=None,
                      help='write the result here (in --suite mode: the JSON list rows are '
                           f'appended to; default {SUITE_JSON})')
  parser.add_argument('--label', default=None, help='row name in the output (default: the config)')
  parser.add_argument('--no-matmul-peak', action='store_true',
                      help='skip measuring the fp32 matmul peak (used for "%% matmul peak")')
  parser.add_argument('--suite', action='store_true',
                      help='run the whole matrix, each setting in a subprocess')
  parser.add_argument('--only', action='append', default=[], metavar='SUBSTR',
                      help='--suite: run only settings whose name contains one of these '
                           '(comma-separated or repeated), e.g. --only cpu_tiny,ref-small')
  parser.add_argument('--timeout', type=float, default=None,
                      help='--suite: seconds allowed per setting (default: none)')
  args = parser.parse_args()
  if args.steps < 1 or args.warmup < 0:
    parser.error('--steps must be >= 1 and --warmup >= 0.')

  if args.suite:
    run_suite(args)
    return
  row = run_one(args.config, args.set, args.frames, tuple(args.size), args.steps, args.warmup,
                measure_peak=not args.no_matmul_peak, label=args.label)
  if args.json:
    common.write_json(args.json, row)
  print_line(row)


if __name__ == '__main__':
  main()
