"""One-shot accelerator check: what a GPU/TPU session needs to measure, in one command.

Run through benchmarks/device_check.sh (which also runs the test suite on the accelerator). Every
part prints its figures and goes into one JSON and one markdown table. Parts:

  facts       device, jax / jaxlib / flax versions, host CPU.
  memory      the compiled default train step (8 pairs x 256 points x 32 samples, 50 frames of
              256 x 256) from XLA's memory analysis, with and without remat chunks; goal < 8 GB.
  transfers   the compiled train steps (single and scanned) run under
              jax.transfer_guard('disallow'): no implicit host <-> device copy inside the loop.
  precision   the bijection's round trip (local -> canonical -> local) with the matmul precision
              at 'highest' (the default), 'high' (TF32 on NVIDIA GPUs) and 'default' (bf16 passes
              on GPU / TPU): the error decides whether faster matmuls keep the map exact.
  steps       (accelerator only) benchmarks/train_step.py for default and paper at N = 50,
              128 x 128 and 256 x 256 -> ms/step and the projected 100k-iteration time.
  tracking    (accelerator only) benchmarks/track.py for default at N = 50, 256 x 256.
  quality     (accelerator only) 2,000 steps of cpu_quality on one synthetic-v1 video with its
              TAP-Vid metrics (benchmarks/quality.py).
  raft        (accelerator only) RAFT flow (data.flow_backend='raft', random weights): ms per
              pair and XLA memory at 256x256 and 854x480, raft and raft_small, RAFT_CHUNK pairs
              per call, and the cost of exhaustive pairs (benchmarks/flow_backends.py --raft).

On a CPU-only machine the accelerator parts are skipped, and the JSON and the table say so.

  .venv/bin/python benchmarks/device_check.py --out OUT_DIR
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402
import flops as flops_lib  # noqa: E402

BENCHMARKS = Path(__file__).resolve().parent
MEMORY_GOAL_GB = 8.0
MEMORY_FRAMES, MEMORY_SIZE = 50, (256, 256)
PRECISIONS = ('highest', 'high', 'default')
ROUND_TRIP_POINTS = 10_000
STEP_SETTINGS = [(name, size) for name in ('default', 'paper') for size in (128, 256)]
STEP_FRAMES = 50
QUALITY_STEPS = 2000
QUALITY_VIDEO = 2  # synthetic-v1 three-crossing: independent motion and occlusions.
RAFT_CHUNK = 16  # Pairs per compiled RAFT call (~8 GB per call at 854x480, XLA's analysis).


def memory(remat_chunks: int) -> dict:
  """XLA's memory analysis of the compiled default step (nothing is run)."""
  from omnimotion_jax.config import load_config  # pylint: disable=g-import-not-at-top
  config = load_config('default', [f'train.remat_chunks={remat_chunks}'])
  step, state, data, key = flops_lib.build_train_step(config, MEMORY_FRAMES, *MEMORY_SIZE)
  start = time.perf_counter()
  compiled = step.lower(state, data, key).compile()
  compile_s = time.perf_counter() - start
  analysis = compiled.memory_analysis()
  fields = ('argument_size_in_bytes', 'output_size_in_bytes', 'alias_size_in_bytes',
            'temp_size_in_bytes', 'generated_code_size_in_bytes')
  row = {f: int(getattr(analysis, f, 0) or 0) for f in fields}
  # Donated state: outputs alias the arguments, so they are counted once.
  peak = (row['argument_size_in_bytes'] + row['output_size_in_bytes']
          - row['alias_size_in_bytes'] + row['temp_size_in_bytes'])
  return {'remat_chunks': remat_chunks, 'frames': MEMORY_FRAMES, 'size_hw': list(MEMORY_SIZE),
          'rays': config.train.sampling.num_pairs * config.train.sampling.num_points,
          'samples': config.model.num_samples, 'compile_s': round(compile_s, 1), **row,
          'peak_gb': round(peak / 2**30, 3), 'goal_gb': MEMORY_GOAL_GB,
          'goal_met': bool(peak / 2**30 < MEMORY_GOAL_GB)}


def transfers() -> dict:
  """Runs the compiled steps on device-resident inputs with implicit transfers disallowed."""
  import jax  # pylint: disable=g-import-not-at-top
  from omnimotion_jax.config import load_config  # pylint: disable=g-import-not-at-top
  from omnimotion_jax.model import model as model_lib  # pylint: disable=g-import-not-at-top
  from omnimotion_jax.model import render  # pylint: disable=g-import-not-at-top
  from omnimotion_jax.train import step as step_lib  # pylint: disable=g-import-not-at-top

  config = load_config('cpu_tiny', ['train.steps_per_dispatch=4'])
  tc = config.train
  n, h, w = 12, 48, 64
  data = jax.device_put(common.synthetic_train_data(n, h, w))
  video = render.VideoShape(n, h, w)
  model, tx, multi, single = step_lib.compiled_train_steps(
      model_lib.model_config(config.model), *step_lib.train_configs(tc, config.model.kind),
      tc.hard_mining.start, tc.steps_per_dispatch, tc.remat_chunks)
  state = step_lib.create_train_state(model, tx, jax.random.PRNGKey(0), video)
  key = jax.random.PRNGKey(1)
  jax.block_until_ready((state, data, key))
  try:
    with jax.transfer_guard('disallow'):
      for fn in (single, multi, single):
        state, metrics = fn(state, data, key)
      jax.block_until_ready((state, metrics))
  except Exception as e:  # pylint: disable=broad-except
    return {'ok': False, 'error': f'{type(e).__name__}: {str(e)[:300]}'}
  return {'ok': True, 'steps': int(jax.device_get(state.step))}


def precision() -> list[dict]:
  """Round-trip error and time of the bijection per matmul precision."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from omnimotion_jax.config import load_config  # pylint: disable=g-import-not-at-top
  from omnimotion_jax.model import model as model_lib  # pylint: disable=g-import-not-at-top

  rows = []
  x = jax.random.uniform(jax.random.PRNGKey(0), (ROUND_TRIP_POINTS, 3),
                         minval=jnp.array([-1.0, -1.0, 0.0]), maxval=jnp.array([1.0, 1.0, 2.0]))
  t = jnp.full((ROUND_TRIP_POINTS, 1), 0.5)
  for name in PRECISIONS:
    config = load_config('default', [f'model.bijection.precision={name!r}'])
    model = model_lib.OmniMotion(model_lib.model_config(config.model))
    params = model_lib.init_params(model, jax.random.PRNGKey(1))
    apply = lambda p, x, method: model.apply({'params': p}, x, t, method=method)
    round_trip = jax.jit(lambda p, x: apply(p, apply(p, x, model_lib.OmniMotion.to_canonical),
                                            model_lib.OmniMotion.to_local))
    back = jax.block_until_ready(round_trip(params, x))
    start = time.perf_counter()
    back = jax.block_until_ready(round_trip(params, x))
    rows.append({'precision': name, 'max_abs_error': float(jnp.max(jnp.abs(back - x))),
                 'ms': round(1000 * (time.perf_counter() - start), 2)})
  return rows


def _script(args: list[str], timeout_s: int) -> dict:
  """Runs a benchmark script with --json into a temp file; returns its JSON (or the error)."""
  out = Path(tempfile.mkdtemp(prefix='device_check_')) / 'result.json'
  cmd = [sys.executable, *args, '--json', str(out)]
  start = time.time()
  result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
  if result.returncode != 0:
    return {'command': ' '.join(cmd), 'error': result.stderr.strip().splitlines()[-1:]}
  return {'command': ' '.join(cmd), 'wall_s': round(time.time() - start, 1),
          'result': json.loads(out.read_text())}


def accelerator_parts() -> dict:
  steps = [_script([str(BENCHMARKS / 'train_step.py'), '--config', name, '--frames',
                    str(STEP_FRAMES), '--size', str(size), str(size)], 600)
           for name, size in STEP_SETTINGS]
  tracking = _script([str(BENCHMARKS / 'track.py'), '--config', 'default', '--frames',
                      str(STEP_FRAMES), '--size', '256', '256'], 600)
  quality = _script([str(BENCHMARKS / 'quality.py'), '--config', f'cpu_quality:{QUALITY_STEPS}',
                     '--suite', 'synthetic-v1', '--videos', str(QUALITY_VIDEO), '--workroot',
                     tempfile.mkdtemp(prefix='device_check_quality_')], 900)
  raft_rows = _script([str(BENCHMARKS / 'flow_backends.py'), '--raft', '--skip_opencv',
                       '--raft_chunk', str(RAFT_CHUNK)], 600)
  return {'steps': steps, 'tracking': tracking, 'quality': quality, 'raft': raft_rows}


def markdown(report: dict) -> str:
  f = report['facts']
  lines = [f'# Device check: {report["device"]}', '',
           f'jax {f["jax_version"]}, jaxlib {f["jaxlib_version"]}, flax {f["flax_version"]}; '
           f'{f["num_devices"]} device(s); {report["wall_s"]:.0f} s in all.', '',
           '| check | result |', '|---|---|']
  for m in report['memory']:
    lines.append(f'| default step, remat {m["remat_chunks"]}: peak memory (XLA analysis) | '
                 f'{m["peak_gb"]:.2f} GB (goal < {m["goal_gb"]:.0f} GB: '
                 f'{"met" if m["goal_met"] else "not met"}) |')
  t = report['transfers']
  lines.append(f'| train steps under transfer_guard("disallow") | '
               f'{"no implicit transfer" if t["ok"] else t["error"]} |')
  for p in report['precision']:
    lines.append(f'| bijection round trip, precision {p["precision"]} | max error '
                 f'{p["max_abs_error"]:.2e}, {p["ms"]} ms for {ROUND_TRIP_POINTS} points |')
  acc = report['accelerator']
  if 'skipped' in acc:
    lines.append(f'| steps, tracking, quality, RAFT | skipped: {acc["skipped"]} |')
  else:
    for s in acc['steps']:
      r = s.get('result')
      lines.append(f'| {" ".join(s["command"].split()[2:8])} | ' + (
          f'{r["ms_per_step_median"]:.1f} ms/step, 100k in {r["projected_100k_h"]:.2f} h'
          if r else f'error: {s["error"]}') + ' |')
    for name in ('tracking', 'quality'):
      r = acc[name]
      lines.append(f'| {name} | ' + (f'see JSON ({r["wall_s"]} s)' if 'result' in r
                                     else f'error: {r["error"]}') + ' |')
    r = acc['raft']
    for row in r['result']['raft']['rows'] if 'result' in r else []:
      lines.append(f'| RAFT {row["kind"]} {row["size_hw"][1]}x{row["size_hw"][0]}, '
                   f'{row["iters"]} iterations | {row["ms_per_pair"]} ms/pair (chunk '
                   f'{row["chunk"]}), {row["chunk_peak_mb"]:.0f} MB per chunk (XLA) |')
    if 'result' not in r:
      lines.append(f'| RAFT | error: {r["error"]} |')
  return '\n'.join(lines) + '\n'


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--out', default=str(common.RESULTS_DIR),
                      help='folder for device_check_<platform>.json / .md')
  parser.add_argument('--skip_memory', action='store_true', help='skip the two default compiles')
  args = parser.parse_args()
  import jax  # pylint: disable=g-import-not-at-top

  start = time.time()
  info = common.device_info()
  report = {'device': common.device_label(info), 'facts': info}
  print(f'device: {report["device"]}, jax {info["jax_version"]}', flush=True)
  report['memory'] = [] if args.skip_memory else [memory(chunks) for chunks in (16, 1)]
  for m in report['memory']:
    print(f'memory, remat {m["remat_chunks"]}: {m["peak_gb"]:.2f} GB', flush=True)
  report['transfers'] = transfers()
  print(f'transfer guard: {report["transfers"]}', flush=True)
  report['precision'] = precision()
  for p in report['precision']:
    print(f'precision {p["precision"]}: round-trip error {p["max_abs_error"]:.2e}', flush=True)
  if jax.devices()[0].platform == 'cpu':
    report['accelerator'] = {'skipped': 'no accelerator (jax runs on the CPU)'}
    print('steps, tracking, quality, RAFT: skipped (no accelerator)', flush=True)
  else:
    report['accelerator'] = accelerator_parts()
  report['wall_s'] = time.time() - start
  out = Path(args.out)
  platform = info['platform']
  common.write_json(out / f'device_check_{platform}.json', report)
  (out / f'device_check_{platform}.md').write_text(markdown(report))
  print(markdown(report))


if __name__ == '__main__':
  main()
