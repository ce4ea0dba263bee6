"""Inference speed: sparse query tracking, dense all-pixel mapping, and dense pseudo-depth.

The model has randomly initialised parameters: the work per query does not depend on training
(fixed K samples per ray, fixed-size chunks), so neither does the speed. Three measurements:

  sparse  `track.track_queries` of --queries random (t, y, x) queries through all --frames frames
          (with the occlusion pass, as evaluation runs it) -> queries/s and rows/s (query x frame);
  dense   every pixel of frame 0 mapped to every frame (`track_queries` on the full pixel grid)
          -> pixel x frame rows/s and the implied dense frames/s (= rows/s / (H W));
  depth   pseudo-depth maps of every pixel of every frame (`track.depth_maps`) -> frames/s.

Compilation of each jitted function (one fixed chunk shape) is timed separately, by a first call
on one chunk, before the timed run.

  .venv/bin/python benchmarks/track.py --config cpu_tiny --frames 20 --size 256 256 \
      --queries 1024 --json benchmarks/results/track_cpu_tiny.json
  .venv/bin/python benchmarks/track.py --config cpu_tiny --frames 4 --size 32 32 --queries 64  # smoke
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402
import flops as flops_lib  # noqa: E402

DEFAULT_FRAMES = 20
DEFAULT_SIZE = (256, 256)
DEFAULT_QUERIES = 1024
MODES = ('sparse', 'dense', 'depth')
SEED = 0


def _block(tree):
  import jax  # pylint: disable=g-import-not-at-top
  return jax.block_until_ready(tree)


def _compile_time(fn, *args) -> float:
  """Seconds of the first call of a jitted function on one chunk (trace + compile + one run)."""
  start = time.perf_counter()
  _block(fn(*args))
  return time.perf_counter() - start


def run(config_name: str, overrides: list[str], frames: int, size: tuple[int, int],
        num_queries: int, modes: tuple[str, ...], chunk_size: int | None) -> dict:
  """Runs the requested measurements in this process; returns the JSON payload."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from omnimotion_jax import track  # pylint: disable=g-import-not-at-top
  from omnimotion_jax.config import config_hash, load_config  # pylint: disable=g-import-not-at-top
  from omnimotion_jax.model import model as model_lib  # pylint: disable=g-import-not-at-top
  from omnimotion_jax.model import render  # pylint: disable=g-import-not-at-top

  config = load_config(config_name, overrides)
  height, width = size
  video = render.VideoShape(frames, height, width)
  model = model_lib.build(model_lib.model_config(config.model))
  params = _block(model_lib.init_params(model, jax.random.PRNGKey(config.seed)))
  chunk = chunk_size or config.track.chunk_size
  margin = render.occlusion_margin(model, config.track.occlusion_eps_factor)
  info = common.device_info()
  out = {'config_name': config_name, 'overrides': list(overrides),
         'config_hash': config_hash(config), 'frames': frames, 'size_hw': [height, width],
         'chunk_size': chunk, 'device': common.device_label(info), 'device_info': info,
         'jax_version': info['jax_version'], 'results': {}, 'config': config.to_dict()}
  dummy_px = jnp.zeros((chunk, 2), jnp.float32)
  dummy_idx = jnp.zeros((chunk,), jnp.int32)

  if 'sparse' in modes or 'dense' in modes:
    mapper = render.make_mapper(model, video, margin, use_max_loc=config.track.use_max_loc)
    compile_s = _compile_time(mapper, params, dummy_px, dummy_idx, dummy_idx)
    row_flops = flops_lib.mapping_flops_per_row(config, with_occlusion=True)
    track_kw = dict(chunk_size=chunk, occlusion_threshold=config.track.occlusion_threshold)

  if 'sparse' in modes:
    rng = np.random.default_rng(SEED)
    queries = np.stack([rng.integers(0, frames, num_queries),
                        rng.uniform(0, height - 1, num_queries),
                        rng.uniform(0, width - 1, num_queries)], -1).astype(np.float32)
    start = time.perf_counter()
    track.track_queries(mapper, params, queries, video, **track_kw)
    elapsed = time.perf_counter() - start
    rows = num_queries * frames
    out['results']['sparse'] = {
        'queries': num_queries, 'rows': rows, 'compile_s': compile_s, 'seconds': elapsed,
        'queries_per_s': num_queries / elapsed, 'rows_per_s': rows / elapsed,
        'flops_per_row': row_flops, 'achieved_flops_per_s': rows * row_flops / elapsed}

  if 'dense' in modes:
    queries = track.grid_queries(video, step=1, frame=0)
    start = time.perf_counter()
    track.track_queries(mapper, params, queries, video, **track_kw)
    elapsed = time.perf_counter() - start
    rows = queries.shape[0] * frames
    out['results']['dense'] = {
        'pixels': int(queries.shape[0]), 'rows': rows, 'compile_s': compile_s,
        'seconds': elapsed, 'pixel_frames_per_s': rows / elapsed,
        'implied_frames_per_s': rows / elapsed / (height * width),
        'flops_per_row': row_flops, 'achieved_flops_per_s': rows * row_flops / elapsed}

  if 'depth' in modes:
    depth_fn = track.make_depth_fn(model, video)
    compile_s = _compile_time(depth_fn, params, dummy_px, dummy_idx)
    start = time.perf_counter()
    track.depth_maps(depth_fn, params, video, np.arange(frames), chunk_size=chunk)
    elapsed = time.perf_counter() - start
    pixels = frames * height * width
    px_flops = flops_lib.depth_flops_per_pixel(config)
    out['results']['depth'] = {
        'pixels': pixels, 'compile_s': compile_s, 'seconds': elapsed,
        'pixels_per_s': pixels / elapsed, 'frames_per_s': frames / elapsed,
        'flops_per_pixel': px_flops, 'achieved_flops_per_s': pixels * px_flops / elapsed}

  out.update(common.peak_memory())
  return out


def print_rows(res: dict) -> None:
  """One line per measurement."""
  head = (f"{res['config_name']} N={res['frames']} {res['size_hw'][0]}x{res['size_hw'][1]} "
          f"chunk {res['chunk_size']} [{res['device']}]")
  r = res['results']
  if 'sparse' in r:
    s = r['sparse']
    print(f"{head} sparse: {s['queries']} queries in {s['seconds']:.2f} s -> "
          f"{s['queries_per_s']:.1f} queries/s ({s['rows_per_s']:.0f} rows/s, "
          f"{s['achieved_flops_per_s'] / 1e9:.1f} GFLOP/s), compile {s['compile_s']:.1f} s")
  if 'dense' in r:
    d = r['dense']
    print(f"{head} dense: {d['rows']} pixel-frames in {d['seconds']:.2f} s -> "
          f"{d['pixel_frames_per_s']:.0f} pixel-frames/s = {d['implied_frames_per_s']:.3f} "
          f"frames/s ({d['achieved_flops_per_s'] / 1e9:.1f} GFLOP/s)")
  if 'depth' in r:
    d = r['depth']
    print(f"{head} depth: {d['pixels']} pixels in {d['seconds']:.2f} s -> "
          f"{d['frames_per_s']:.3f} frames/s ({d['pixels_per_s']:.0f} px/s, "
          f"{d['achieved_flops_per_s'] / 1e9:.1f} GFLOP/s), compile {d['compile_s']:.1f} s")
  print(f"{head} peak memory {res['peak_memory_mb']:.0f} MB ({res['peak_memory_kind']})")


def main() -> None:
  parser = argparse.ArgumentParser(
      description='Tracking speed with random parameters: sparse queries/s, dense all-pixel '
                  'mapping (pixel-frames/s, implied frames/s), pseudo-depth frames/s.')
  parser.add_argument('--config', default='cpu_tiny',
                      help='config name (configs/NAME.py) or path (default: %(default)s)')
  parser.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                      help='config override, e.g. --set track.chunk_size=8192 (repeatable)')
  parser.add_argument('--frames', type=int, default=DEFAULT_FRAMES,
                      help='frames of the video (default: %(default)s)')
  parser.add_argument('--size', type=int, nargs=2, default=DEFAULT_SIZE, metavar=('H', 'W'),
                      help='frame height and width in px (default: %(default)s)')
  parser.add_argument('--queries', type=int, default=DEFAULT_QUERIES,
                      help='random queries for the sparse measurement (default: %(default)s)')
  parser.add_argument('--modes', default=','.join(MODES),
                      help='comma-separated subset of sparse,dense,depth (default: all)')
  parser.add_argument('--chunk-size', type=int, default=None,
                      help='rows per compiled call (default: config.track.chunk_size)')
  parser.add_argument('--json', type=Path, default=None, help='write the result here')
  args = parser.parse_args()
  modes = tuple(m for m in args.modes.split(',') if m)
  unknown = set(modes) - set(MODES)
  if unknown or not modes:
    parser.error(f'--modes: unknown {sorted(unknown)}; choose from {",".join(MODES)}')
  from omnimotion_jax import progress  # pylint: disable=g-import-not-at-top
  with progress.quiet():  # No progress bars inside the timed loops.
    res = run(args.config, args.set, args.frames, tuple(args.size), args.queries, modes,
              args.chunk_size)
  if args.json:
    common.write_json(args.json, res)
  print_rows(res)


if __name__ == '__main__':
  main()
