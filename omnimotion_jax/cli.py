"""`omnimotion-jax` command line: thin argparse front-ends over library functions.

Every sub-command parses its arguments and calls one library function. A `UserInputError` from the
library is printed as one line (no traceback) and exits with status 2.
"""

import argparse
import logging
import os
import sys
from pathlib import Path

from omnimotion_jax import progress
from omnimotion_jax.config import apply_override, config_hash, enable_compilation_cache
from omnimotion_jax.config import load_config, merge_over_default, validate
from omnimotion_jax.errors import UserInputError

def _add_config_args(p: argparse.ArgumentParser, default: str | None = 'default') -> None:
  """--config (default None: the config saved in WORKDIR) and repeatable --set overrides."""
  p.add_argument('--config', default=default, help=(
      'config (default: the one saved in WORKDIR)' if default is None else
      f'config file (configs/*.py) or its name, e.g. cpu_tiny (default: {default})'))
  example = 'track.occlusion_threshold=0.95' if default is None else 'train.num_steps=2000'
  p.add_argument('--set', dest='overrides', action='append', default=[], metavar='KEY=VALUE',
                 help=f'override one config field, e.g. --set {example} (repeatable)')


# --- sub-commands ------------------------------------------------------------------------------

def cmd_config(args) -> None:
  """Prints the resolved config and the model's parameter counts."""
  import jax
  from omnimotion_jax.model import model as model_lib

  config = load_config(args.config, args.overrides)
  print(config)
  model = model_lib.build(model_lib.model_config(config.model))
  shapes = jax.eval_shape(lambda k: model_lib.init_params(model, k), jax.random.key(0))
  print(f'config hash: {config_hash(config)}')
  print('parameters:')
  for name, tree in shapes.items():
    print(f'  {name:12s} {model_lib.count_params(tree):>10,d}')
  print(f'  {"total":12s} {model_lib.count_params(shapes):>10,d}')


def cmd_synth(args) -> None:
  """Writes one synthetic video with exact ground-truth tracks."""
  from omnimotion_jax.data import synthetic

  height, width = args.size
  result = synthetic.synth_command(args.seed, args.out, frames=args.frames, height=height,
                                   width=width, preview=args.preview)
  print(f'wrote {result["npz"]} ({result["num_frames"]} frames, {result["num_tracks"]} tracks)')
  if result['preview']:
    print(f'preview: {result["preview"]}')


def _saved_or_given_config(args, workdir_path: str | None = None):
  """--config with its --set overrides; without --config (a default only for stages after
  training) the config saved in WORKDIR (or in `workdir_path`)."""
  from omnimotion_jax import workdir
  enable_compilation_cache()
  if args.config is not None:
    return load_config(args.config, args.overrides)
  workdir_path = workdir_path or args.workdir
  saved = workdir.load_saved_config(Path(workdir_path))
  if saved is None:
    raise UserInputError(f'{workdir_path}: no config.json (not trained yet?); pass --config.')
  config = merge_over_default(saved)  # Also migrates configs saved by earlier versions.
  for item in args.overrides:
    apply_override(config, item)
  validate(config)
  return config


def cmd_preprocess(args) -> None:
  from omnimotion_jax import pipeline
  pipeline.preprocess_stage(args.video, Path(args.workdir), _saved_or_given_config(args))


def _several_workdirs(args):
  """(workdirs, config) of a command given several run folders, which share one config."""
  from omnimotion_jax import workdir
  from omnimotion_jax.train import loop
  workdirs = [Path(w) for w in args.workdir]
  if len(set(w.resolve() for w in workdirs)) != len(workdirs):
    raise UserInputError('--workdir: each WORKDIR must be a different folder.')
  config = _saved_or_given_config(args, str(workdirs[0]))
  for path in workdirs[1:]:
    saved = workdir.load_saved_config(path)
    if args.config is None and saved is not None and loop.changed_training_fields(saved, config):
      raise UserInputError(f'{path} was trained with another config than {workdirs[0]}; a batch '
                           'shares one config: pass --config.')
  return workdirs, config


def cmd_train(args) -> None:
  from omnimotion_jax import pipeline
  workdirs, config = _several_workdirs(args)
  if args.data_parallel and len(workdirs) > 1:
    raise UserInputError('--data_parallel splits one video over the devices; give one --workdir '
                         '(several are batched over the devices without it).')
  if len(workdirs) == 1:
    import jax
    devices = jax.local_devices() if args.data_parallel else None
    states = [pipeline.train_stage(config, workdirs[0], devices=devices)]
  else:
    states = pipeline.train_many_stage(config, workdirs)
  for workdir, state in zip(workdirs, states):
    print(f'trained to step {int(state.step)} ({int(state.num_skipped)} non-finite steps '
          f'skipped); checkpoints in {workdir}')


def cmd_track(args) -> None:
  from omnimotion_jax import pipeline
  config = _saved_or_given_config(args)
  queries = pipeline.load_queries(args.queries) if args.queries else None
  out = pipeline.track_stage(config, Path(args.workdir), queries=queries, grid=args.grid,
                             frame=args.frame, out=args.out)
  print(f'wrote {out}')


def cmd_depth(args) -> None:
  from omnimotion_jax import pipeline
  path = pipeline.depth_stage(_saved_or_given_config(args), Path(args.workdir))
  print(f'wrote {path}')


def cmd_run(args) -> None:
  from omnimotion_jax import pipeline
  if len(args.video) != len(args.workdir):
    raise UserInputError(f'run: {len(args.video)} videos but {len(args.workdir)} --workdir '
                         'folders; give one run folder per video, in the same order.')
  workdirs, config = _several_workdirs(args)
  runs = pipeline.run_many(args.video, workdirs, config, grid=args.grid, frame=args.frame)
  for workdir, outputs in zip(workdirs, runs):
    for name, path in outputs.items():
      print(f'{name}: {path}')


def cmd_viz(args) -> None:
  from omnimotion_jax.viz import report
  index = report.viz_command(args.workdir, fps=args.fps)
  print(f'report: {index}')


def cmd_demo(args) -> None:
  from omnimotion_jax import demo
  result = demo.run_demo(args.workdir, _saved_or_given_config(args))
  print(result['table'])
  print(f'input video: {result["input"]}')
  print(f'tracks:      {result["tracks"]}')
  print(f'report:      {result["report"]}')


def _start_distributed(args) -> None:
  """jax.distributed for a multi-host job: each process then evaluates its own shard."""
  import jax
  try:
    jax.distributed.initialize(coordinator_address=args.coordinator,
                               num_processes=args.num_processes, process_id=args.process_id)
  except (ValueError, RuntimeError) as e:
    raise UserInputError(f'--distributed: {e}. Outside a cluster JAX detects (Cloud TPU, SLURM, '
                         'Open MPI, ...), pass --coordinator HOST:PORT --num_processes N '
                         '--process_id I on every host.') from None


def cmd_eval(args) -> None:
  """Resumable TAP-Vid evaluation of a whole set (or one shard of it)."""
  from omnimotion_jax.evaluation import suite as evaluator
  if args.distributed:
    _start_distributed(args)
  label = ' '.join([args.config] + [f'--set {item}' for item in args.overrides])
  summary = evaluator.run_evaluation(
      args.dataset, args.query_mode, _saved_or_given_config(args), args.manual_dir, args.out,
      data_dir=args.data_dir, videos=args.videos, shard=args.shard, baseline=args.baseline,
      resolution=args.resolution, config_label=label, workers=args.workers,
      batch_videos=args.batch_videos)
  print(f'summary: {summary["summary_path"]}')


def cmd_convert_weights(args) -> None:
  from omnimotion_jax.data.nets import weights
  path, layout = weights.convert_file(args.kind, args.source, args.out)
  print(f'wrote {path} ({args.kind}, from {layout} layout)')


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog='omnimotion-jax',
      description='OmniMotion in JAX/Flax: dense, long-range, occlusion-aware point tracking by '
                  'test-time optimisation of one model per video.')
  parser.add_argument('--quiet', action='store_true',
                      help='no progress bars and no info lines (warnings and errors only)')
  parser.add_argument('--cpu_devices', type=int, default=None, metavar='N',
                      help='split the CPU into N XLA devices, so that a batch of videos (train '
                           'with several --workdir, eval --batch_videos) runs one video per '
                           'device; on the 2-core development CPU, 2 devices train 2 videos at '
                           '1.33x the throughput of one at a time (benchmarks/batch.py)')
  sub = parser.add_subparsers(dest='command', metavar='COMMAND')

  p = sub.add_parser('config', help='print a resolved config and the model parameter counts')
  _add_config_args(p)
  p.set_defaults(func=cmd_config)

  p = sub.add_parser('synth', help='write a synthetic video with exact ground-truth tracks (.npz)',
                     description='Procedural video (real photo textures, camera pan/zoom, moving '
                                 'occluding layers) in the TAP-Vid layout: video, target_points '
                                 '(x,y), occluded, and first/strided query points (t,y,x).')
  p.add_argument('--seed', type=int, required=True, help='video seed (bit-for-bit reproducible)')
  p.add_argument('--out', required=True, help='output .npz path')
  p.add_argument('--frames', type=int, default=32, help='number of frames (default 32)')
  p.add_argument('--size', type=int, nargs=2, default=(128, 128), metavar=('H', 'W'),
                 help='frame size in px (default 128 128)')
  p.add_argument('--preview', action='store_true', help='also write an .mp4 with the GT points')
  p.set_defaults(func=cmd_synth)

  p = sub.add_parser('preprocess', help='video -> sequence store (flows, masks, counts)',
                     description='Reads a video (mp4/mov/webm/gif or a folder of jpg/png frames), '
                                 'computes and filters correspondences, and writes '
                                 'WORKDIR/sequence.npz. Re-running skips finished work.')
  p.add_argument('video', help='video file, frame folder, or (data.flow_backend=omnimotion_dir) '
                               'a sequence folder in the reference layout')
  p.add_argument('--workdir', required=True, help='run folder')
  _add_config_args(p)
  p.set_defaults(func=cmd_preprocess)

  p = sub.add_parser('train', help='optimise the model on a preprocessed video (resumes)',
                     description='Test-time optimisation on WORKDIR/sequence.npz. Resumes from the '
                                 'newest checkpoint; Ctrl-C saves a checkpoint and exits. Several '
                                 'WORKDIRs train as one batch (one program, videos of any sizes, '
                                 'spread over all local devices); each gets the result training '
                                 'it alone gives.')
  p.add_argument('--workdir', required=True, nargs='+',
                 help='run folder(s) (after preprocess)')
  p.add_argument('--data_parallel', action='store_true',
                 help='one video: split each step\'s rays over all local devices and average the '
                      'gradients (train.sampling.num_pairs must divide by the device count)')
  _add_config_args(p)
  p.set_defaults(func=cmd_train)

  p = sub.add_parser('track', help='track query points or a grid with a trained model',
                     description='Writes an .npz with tracks [N,T,2] (x,y), occluded [N,T] and '
                                 'query_points [N,3] (t,y,x), in the input video\'s pixels.')
  p.add_argument('--workdir', required=True, help='trained run folder')
  q = p.add_mutually_exclusive_group(required=True)
  q.add_argument('--queries', help='.npy of [N,3] (t,y,x) query points in input-video px')
  q.add_argument('--grid', type=int, help='track a grid every GRID px of --frame')
  p.add_argument('--frame', type=int, default=0, help='query frame of the grid (default 0)')
  p.add_argument('--out', help='output .npz (default WORKDIR/tracks.npz)')
  _add_config_args(p, default=None)
  p.set_defaults(func=cmd_track)

  p = sub.add_parser('depth', help='pseudo-depth maps of every frame with a trained model',
                     description='Writes WORKDIR/depth.npy: float32 [N,H,W], the expected local '
                                 'depth sum_k w_k z_k of every pixel (model resolution).')
  p.add_argument('--workdir', required=True, help='trained run folder')
  _add_config_args(p, default=None)
  p.set_defaults(func=cmd_depth)

  p = sub.add_parser('run', help='preprocess + train + track a grid + pseudo-depth, in one go',
                     description='The whole pipeline and its HTML report. Several videos (one '
                                 '--workdir each, in order) train as one batch.')
  p.add_argument('video', nargs='+', help='video file(s) or folder(s) of frames')
  p.add_argument('--workdir', required=True, nargs='+', help='run folder(s), one per video')
  p.add_argument('--grid', type=int, default=8, help='grid step of the tracked points (px)')
  p.add_argument('--frame', type=int, default=0, help='query frame of the grid')
  _add_config_args(p)
  p.set_defaults(func=cmd_run)

  p = sub.add_parser('viz', help='render track/trail/pseudo-depth videos and the HTML report',
                     description='Writes WORKDIR/report/index.html (static, opens from disk) and '
                                 'the videos it shows. Works on partial workdirs.')
  p.add_argument('--workdir', required=True, help='run folder')
  p.add_argument('--fps', type=float, default=10, help='frame rate of the videos')
  p.set_defaults(func=cmd_viz)

  p = sub.add_parser('demo', help='the whole pipeline on a bundled synthetic video with ground '
                                  'truth, scored against flow baselines, with a report')
  p.add_argument('--workdir', default='out/demo', help='output folder (default out/demo)')
  _add_config_args(p, default='cpu_demo')
  p.set_defaults(func=cmd_demo)

  p = sub.add_parser('eval', help='evaluate on a TAP-Vid set (resumable, shardable)',
                     description='For each video at 256x256: sample TAP-Vid queries, preprocess, '
                                 'optimise, track, and score OmniMotion beside chained- and '
                                 'direct-flow baselines built on the same correspondences. Writes '
                                 'OUT/videos/<id>/result.json and OUT/summary.md (with the '
                                 'published numbers). Finished videos are skipped on re-runs.')
  p.add_argument('--dataset', required=True,
                 choices=('tapvid_davis', 'tapvid_rgb_stacking', 'tapvid_kinetics',
                          'tapvid_synthetic'), help='TAP-Vid set')
  p.add_argument('--query_mode', default='strided', choices=('strided', 'first'),
                 help='TAP-Vid query protocol (default strided, as OmniMotion evaluated)')
  p.add_argument('--manual_dir', default=None,
                 help='folder with the TAP-Vid files (tapvid_davis.pkl, tapvid_rgb_stacking.pkl or '
                      'the Kinetics *_of_*.pkl shards); not needed for tapvid_synthetic or once '
                      'the set is prepared in --data_dir')
  p.add_argument('--data_dir', default=None,
                 help='TFDS data dir for the prepared set (default $TFDS_DATA_DIR, else '
                      '~/tensorflow_datasets)')
  p.add_argument('--out', required=True, help='results folder')
  p.add_argument('--videos', default=None,
                 help='comma-separated video ids or positions, e.g. bear,camel or 0,3 '
                      '(default: all)')
  p.add_argument('--shard', default=None, metavar='I/N',
                 help='evaluate videos I, I+N, I+2N, ... (default: this JAX process of a '
                      'multi-process job, else all)')
  p.add_argument('--baseline', default=None, choices=('chained', 'direct'),
                 help='score only this flow baseline, without optimisation (fast)')
  p.add_argument('--resolution', default='256x256',
                 help='dataset config: 256x256 (default, the TAP-Vid protocol); tapvid_synthetic '
                      'also has mini_256x256 (its 4 small videos)')
  p.add_argument('--workers', type=int, default=1,
                 help='videos evaluated at a time, each in a process pinned to its own share of '
                      'the CPU cores (2 on a 2-core CPU: 1.36x the throughput; default 1)')
  p.add_argument('--batch_videos', type=int, default=1,
                 help='videos optimised at a time as one batch, spread over all local devices '
                      '(e.g. the number of GPUs or TPU chips; default 1)')
  p.add_argument('--distributed', action='store_true',
                 help='multi-host job: start jax.distributed (cluster detected, or the three '
                      'flags below); each process evaluates shard process_index/process_count '
                      'on its own local devices. Prepare the TFDS data once beforehand.')
  p.add_argument('--coordinator', default=None, metavar='HOST:PORT',
                 help='with --distributed: the coordinator (process 0) address')
  p.add_argument('--num_processes', type=int, default=None, help='with --distributed')
  p.add_argument('--process_id', type=int, default=None, help='with --distributed')
  p.add_argument('--no_progress', action='store_true', help='no progress bars (as --quiet)')
  _add_config_args(p)
  p.set_defaults(func=cmd_eval)

  p = sub.add_parser('convert-weights', help='convert a PyTorch RAFT or DINO checkpoint to .npz',
                     description='Converts the official release files (raft-things.pth, '
                                 'raft-small.pth, dino_deitsmall16_pretrain.pth) or torchvision '
                                 'state dicts into the .npz that data.raft_weights / '
                                 'data.dino_weights read. Needs PyTorch; running never does.')
  from omnimotion_jax.data.nets import weights  # pylint: disable=g-import-not-at-top
  p.add_argument('--kind', required=True, choices=tuple(weights.CONVERTERS), help='network: ' + (
      '; '.join(f'{kind} ({source})' for kind, source in weights.KINDS.items())))
  p.add_argument('source', help='PyTorch checkpoint (.pth)')
  p.add_argument('out', help='weights file to write (.npz)')
  p.set_defaults(func=cmd_convert_weights)
  return parser


def _force_cpu_devices(count: int) -> None:
  """Makes XLA's CPU platform show `count` devices; must run before JAX starts."""
  if count < 1:
    raise UserInputError(f'--cpu_devices {count}: pass a device count >= 1.')
  if 'jax' in sys.modules:
    from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top
    if xla_bridge.backends_are_initialized():  # XLA_FLAGS are read once, when JAX starts.
      raise UserInputError('--cpu_devices: JAX has already started in this process; set '
                           f'XLA_FLAGS=--xla_force_host_platform_device_count={count} before it.')
  flags = os.environ.get('XLA_FLAGS', '')
  os.environ['XLA_FLAGS'] = f'{flags} --xla_force_host_platform_device_count={count}'.strip()


def main(argv: list[str] | None = None) -> int:
  parser = build_parser()
  args = parser.parse_args(argv)
  if not getattr(args, 'func', None):
    parser.print_help()
    return 0
  if args.cpu_devices is not None:
    try:
      _force_cpu_devices(args.cpu_devices)
    except UserInputError as e:
      print(f'omnimotion-jax: error: {e}', file=sys.stderr)
      return 2
  quiet = args.quiet or getattr(args, 'no_progress', False)
  logging.basicConfig(format='%(message)s')
  level = progress.LOGGER.level  # Restored on return: main() may run inside another program.
  progress.LOGGER.setLevel(logging.WARNING if quiet else logging.INFO)
  try:
    args.func(args)
  except UserInputError as e:
    print(f'omnimotion-jax {args.command}: error: {e}', file=sys.stderr)
    return 2
  except KeyboardInterrupt as e:
    detail = f': {e}' if str(e) else ''
    print(f'omnimotion-jax {args.command}: interrupted{detail}', file=sys.stderr)
    return 130
  finally:
    progress.LOGGER.setLevel(level)
  return 0


if __name__ == '__main__':
  sys.exit(main())
