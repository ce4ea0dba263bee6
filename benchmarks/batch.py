"""Training throughput of batched videos (train/batch.py) against one video at a time.

Every setting runs in its own subprocess (forced host devices and core pinning must be set
before JAX starts) on the real stores of a synthetic suite's first videos (preprocessed once
into WORKROOT) with the real compiled steps, and reports video-steps per second of training and
the videos per hour that makes at the config's `train.num_steps` (training only: preprocessing,
compilation and tracking are reported apart). Settings:

  single         one video at a time, one process on all cores (the unbatched step)
  workers2       two one-core processes (taskset), one video each, at the same time (the
                 `--workers 2` path of eval and quality.py)
  batchB         B videos as one vmapped program, one process, one device
  batchB_dev2    the same, the video axis sharded over 2 forced host devices

  .venv/bin/python benchmarks/batch.py --config cpu_quality --json \
      benchmarks/results/batch_cpu_quality.json

Quality of batched training beside one-at-a-time training on the whole suite comes from
`benchmarks/quality.py --batch_videos B` (see benchmarks/README.md).
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SETTINGS = ('single', 'workers2', 'batch1', 'batch2', 'batch4', 'batch2_dev2', 'batch4_dev2')


def _stores(suite: str, count: int, config, workroot: Path) -> list[Path]:
  """Run folders of the suite's first `count` videos, preprocessed (kept between runs)."""
  from omnimotion_jax import pipeline
  from omnimotion_jax.data import synthetic
  out = []
  for index in range(count):
    sample = synthetic.suite_video(suite, index)
    work = workroot / f'{index:02d}_{sample["name"]}'
    pipeline.preprocess_stage(sample['video'], work, config)
    out.append(work)
  return out


def measure(workdirs: list[str], config_name: str, overrides: list[str], batched: bool,
            steps: int, warmup: int) -> dict:
  """Times `steps` dispatched steps (after `warmup`) of the given videos; in this process."""
  import jax
  from omnimotion_jax import workdir as workdir_lib
  from omnimotion_jax.config import load_config
  from omnimotion_jax.model import model as model_lib
  from omnimotion_jax.model import render
  from omnimotion_jax.train import batch, sampler
  from omnimotion_jax.train import step as step_lib

  config = load_config(config_name, overrides)
  tc = config.train
  args = (model_lib.model_config(config.model), *step_lib.train_configs(tc, config.model.kind),
          tc.hard_mining.start, tc.steps_per_dispatch, tc.remat_chunks)
  datas = [sampler.train_data(workdir_lib.load_sequence(w)) for w in workdirs]
  init_key, key = jax.random.split(jax.random.PRNGKey(config.seed))
  if batched:
    devices = tuple(jax.devices())
    model, tx, multi, _ = batch.compiled_batched_steps(*args, devices)
    shape = batch.padded_shape(datas)
    slots = batch.batch_slots(len(datas), len(devices))
    place = lambda tree: jax.device_put(tree, batch.video_sharding(devices))
    state = place(batch.stack([batch.pad_state(step_lib.create_train_state(
        model, tx, init_key, render.VideoShape(*datas[i].frames.shape[:3])), shape)
                               for i in slots]))
    data = place(batch.stack([batch.pad_data(datas[i], shape) for i in slots]))
    keys = place(batch.stack([key] * len(slots)))
  else:
    (data,) = datas
    model, tx, multi, _ = step_lib.compiled_train_steps(*args)
    state = step_lib.create_train_state(model, tx, init_key,
                                        render.VideoShape(*data.frames.shape[:3]))
    data, keys = jax.device_put(data), key
  t0 = time.perf_counter()
  state, _ = multi(state, data, keys)
  jax.block_until_ready(state)
  first_s = time.perf_counter() - t0  # Compilation + one dispatch.
  dispatches = lambda n: -(-n // tc.steps_per_dispatch)
  for _ in range(dispatches(warmup)):
    state, _ = multi(state, data, keys)
  jax.block_until_ready(state)
  t0 = time.perf_counter()
  for _ in range(dispatches(steps)):
    state, _ = multi(state, data, keys)
  jax.block_until_ready(state)
  elapsed = time.perf_counter() - t0
  done = dispatches(steps) * tc.steps_per_dispatch
  return {'videos': len(datas), 'devices': jax.device_count(), 'steps': done,
          'first_dispatch_s': round(first_s, 2), 's_per_step': elapsed / done,
          'video_steps_per_s': len(datas) * done / elapsed}


def _child(setting: str, workdirs: list[Path], args, cores: str | None = None) -> subprocess.Popen:
  """A subprocess running `measure` for one setting (or one worker of 'workers2')."""
  env = dict(os.environ)
  if setting.endswith('_dev2'):
    env['XLA_FLAGS'] = (env.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=2')
  batched = setting.startswith('batch')
  count = int(setting[5:].split('_')[0]) if batched else 1
  spec = json.dumps({'workdirs': [str(w) for w in workdirs[:count]], 'config_name': args.config,
                     'overrides': args.overrides, 'batched': batched, 'steps': args.steps,
                     'warmup': args.warmup})
  cmd = [sys.executable, __file__, '--_measure', spec]
  if cores is not None:
    cmd = ['taskset', '-c', cores] + cmd
  return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)


def _result(proc: subprocess.Popen) -> dict:
  out, _ = proc.communicate()
  if proc.returncode:
    raise RuntimeError(f'a measurement failed (exit {proc.returncode}); see its output above.')
  return json.loads(out.strip().splitlines()[-1])


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--config', default='cpu_quality')
  parser.add_argument('--set', dest='overrides', action='append', default=[])
  parser.add_argument('--suite', default='synthetic-v1')
  parser.add_argument('--steps', type=int, default=200, help='timed steps per setting')
  parser.add_argument('--warmup', type=int, default=20, help='untimed steps after compiling')
  parser.add_argument('--only', default=None, help=f'comma-separated subset of {SETTINGS}')
  parser.add_argument('--workroot', default='out/batch_bench', help='preprocessed videos')
  parser.add_argument('--json', default=None, help='output JSON')
  parser.add_argument('--_measure', default=None, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args._measure:  # pylint: disable=protected-access
    print(json.dumps(measure(**json.loads(args._measure))))  # pylint: disable=protected-access
    return 0

  from omnimotion_jax import progress
  from omnimotion_jax.config import enable_compilation_cache, load_config
  enable_compilation_cache()
  config = load_config(args.config, args.overrides)
  settings = SETTINGS if args.only is None else tuple(args.only.split(','))
  unknown = set(settings) - set(SETTINGS)
  if unknown:
    parser.error(f'--only: unknown settings {sorted(unknown)}; choose from {SETTINGS}')
  start = time.time()
  with progress.quiet():
    workdirs = _stores(args.suite, 4, config, Path(args.workroot) / args.suite)
  preprocess_s = time.time() - start
  results = {}
  for setting in settings:
    if setting == 'workers2':
      cores = sorted(os.sched_getaffinity(0))
      procs = [_child('single', workdirs[i:], args, cores=str(cores[i % len(cores)]))
               for i in range(2)]
      parts = [_result(p) for p in procs]
      results[setting] = {'videos': 2, 'devices': 1, 'steps': parts[0]['steps'],
                          'first_dispatch_s': max(p['first_dispatch_s'] for p in parts),
                          's_per_step': max(p['s_per_step'] for p in parts),
                          'video_steps_per_s': sum(p['video_steps_per_s'] for p in parts)}
    else:
      results[setting] = _result(_child(setting, workdirs, args))
    r = results[setting]
    r['videos_per_hour'] = r['video_steps_per_s'] * 3600 / config.train.num_steps
    print(f'{setting:12s} {r["videos"]} video(s) on {r["devices"]} device(s): '
          f'{1000 * r["s_per_step"]:7.1f} ms/step, {r["video_steps_per_s"]:6.2f} video-steps/s, '
          f'{r["videos_per_hour"]:5.2f} videos/h at {config.train.num_steps} steps '
          f'(first dispatch {r["first_dispatch_s"]:.0f} s)', flush=True)
  base = results.get('single', {}).get('video_steps_per_s')
  out = {'config': args.config, 'overrides': args.overrides, 'suite': args.suite,
         'num_steps': config.train.num_steps, 'timed_steps': args.steps,
         'cpu_cores': len(os.sched_getaffinity(0)), 'preprocess_s': round(preprocess_s, 1),
         'wall_s': round(time.time() - start, 1), 'settings': results,
         'speedup_vs_single': {k: v['video_steps_per_s'] / base for k, v in results.items()}
         if base else None}
  print(f'wall {out["wall_s"] / 60:.1f} min')
  if args.json:
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2))
    print(f'json: {args.json}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
