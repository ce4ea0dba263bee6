"""Which OpenCV optical flow is the best input? Accuracy and cost of each method.

Two measurements per method:
  * Middlebury stereo (scikit-image's `stereo_motorcycle`, ground-truth disparity): the flow from
    the left to the right view is (-disparity, 0); median end-point error and the fraction of
    pixels within 1 / 3 px, over pixels with a finite disparity, on the pair downsampled to
    `--stereo_side` px (the full pair takes minutes for the slow methods).
  * Real video with TAP-Vid tracks (one frame folder per video, <root>/<id>/ or the
    <root>/<id>/input/ folders that older `omnimotion-jax eval` runs wrote, read with the
    product's loader and resized to --resize H W, 256x256 by default, plus a gt.npz of
    normalised tracks): the error at the ground-truth points of frame-gap 1 and 4 flows, and of
    adjacent flows chained from frame 0 to the last frame (drift), all in px at that size.
Seconds per flow are the median over the pairs (one thread; the machine should be idle).

RAFT rows (`--raft`; nets/raft_infer.py, the 'raft' backend's compiled functions): ms per pair of
the chunked pair function (20 iterations, `--raft_chunk` pairs per call, timed after compiling),
ms per frame of each encoder (run once per frame; the official per-pair code runs fnet twice and
cnet once per pair), and the pair function's memory from XLA's analysis of the compiled chunk
(arguments + outputs + temporaries), at 256x256 and 854x480, for raft and raft_small. Random
weights: the cost does not depend on their values. Then the cost of the exhaustive plan
(N(N-1) pairs) for 32-, 100- and 250-frame videos, and what running the encoders once per frame
saves there. `--skip_opencv` leaves out the OpenCV methods:

  taskset -c 0 .venv/bin/python benchmarks/flow_backends.py --raft --skip_opencv \
      --json benchmarks/results/raft_cpu.json

  .venv/bin/python benchmarks/flow_backends.py --frames_root /path/to/tapvid_davis32_dev \
      --gt /path/to/tapvid_davis32_dev/gt.npz --json /tmp/flow_backends.json

Needs opencv-contrib (cv2.optflow) for everything but DIS and Farneback.
"""

import argparse
import functools
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

# Make `omnimotion_jax` importable when run as `python benchmarks/flow_backends.py` from a checkout.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402  pylint: disable=g-bad-import-order
from omnimotion_jax.data import video as video_lib  # noqa: E402
from omnimotion_jax.data.filtering import bilinear_sample  # noqa: E402

DEFAULT_RESIZE = (256, 256)  # (H, W) px: the TAP-Vid protocol's size.
RAFT_SIZES = ((256, 256), (480, 854))  # (H, W) px: TAP-Vid's size and DAVIS 480p.
RAFT_ITERS = 20  # As the reference's exhaustive_raft.py.
EXHAUSTIVE_FRAMES = (32, 100, 250)


def _grey(frame):
  return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


def make_methods() -> dict:
  """name -> fn(rgb_a, rgb_b) -> float32 [H, W, 2] flow a -> b."""
  def dis(preset):
    algo = cv2.DISOpticalFlow_create(preset)
    return lambda a, b: algo.calc(_grey(a), _grey(b), None)

  methods = {
      'dis_ultrafast': dis(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST),
      'dis_fast': dis(cv2.DISOPTICAL_FLOW_PRESET_FAST),
      'dis_medium': dis(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM),
      'farneback': lambda a, b: cv2.calcOpticalFlowFarneback(_grey(a), _grey(b), None, 0.5, 5, 15,
                                                             3, 5, 1.2, 0),
  }
  if hasattr(cv2, 'optflow'):
    of = cv2.optflow
    deep = of.createOptFlow_DeepFlow()
    tvl1 = of.createOptFlow_DualTVL1()
    pca = of.createOptFlow_PCAFlow()
    rlof = of.createOptFlow_DenseRLOF()
    s2d = of.createOptFlow_SparseToDense()
    methods.update({
        'deepflow': lambda a, b: deep.calc(_grey(a), _grey(b), None),
        'tvl1': lambda a, b: tvl1.calc(_grey(a), _grey(b), None),
        'pcaflow': lambda a, b: pca.calc(_grey(a), _grey(b), None),
        'rlof': lambda a, b: rlof.calc(a[..., ::-1].copy(), b[..., ::-1].copy(), None),
        'sparse_to_dense': lambda a, b: s2d.calc(_grey(a), _grey(b), None),
    })
  return methods


def bilinear(image, xy):
  """image [H, W, C] at xy [Q, 2] (x, y), border-clamped (the product's sampler on clamped px).

  Points are clamped into the frame first, so a chained point that drifts out keeps following
  the border flow (the product's sampler alone would give zero flow there).
  """
  h, w = image.shape[:2]
  return bilinear_sample(image, np.clip(xy[:, 0], 0, w - 1), np.clip(xy[:, 1], 0, h - 1),
                         dtype=np.float64)


def stereo(methods, side: int) -> dict:
  from skimage import data  # pylint: disable=g-import-not-at-top
  left, right, disp = data.stereo_motorcycle()
  scale = side / max(left.shape[:2])
  size = (round(left.shape[1] * scale), round(left.shape[0] * scale))
  left = cv2.resize(left, size, interpolation=cv2.INTER_AREA)
  right = cv2.resize(right, size, interpolation=cv2.INTER_AREA)
  disp = cv2.resize(disp, size, interpolation=cv2.INTER_NEAREST) * scale
  ok = np.isfinite(disp)
  out = {}
  for name, fn in methods.items():
    t0 = time.perf_counter()
    flow = fn(left, right)
    seconds = time.perf_counter() - t0
    err = np.hypot(flow[..., 0] + disp, flow[..., 1])[ok]
    out[name] = {'median_epe': float(np.median(err)), 'within1': float((err < 1).mean()),
                 'within3': float((err < 3).mean()), 'seconds': seconds}
    print(f'stereo {name}: EPE {out[name]["median_epe"]:.2f} <1px {100 * out[name]["within1"]:.0f} '
          f'% <3px {100 * out[name]["within3"]:.0f} % ({seconds:.2f} s)', flush=True)
  return out


def video(methods, frames_root: Path, gt: dict, names: list[str],
          resize: tuple[int, int] = DEFAULT_RESIZE) -> dict:
  results = {m: {'gap1': [], 'gap4': [], 'chain_end': [], 'seconds': []} for m in methods}
  for name in names:
    folder = frames_root / name
    if (folder / 'input').is_dir():  # An older eval run's folder of 256x256 PNG frames.
      folder = folder / 'input'
    frames = video_lib.load_video(folder, resize=resize)
    h, w = frames.shape[1:3]
    pts = gt[f'{name}/points'] * np.array([w, h], np.float32)
    occ = gt[f'{name}/occluded']
    n = len(frames)
    for m, fn in methods.items():
      r = results[m]
      pos = pts[:, 0].copy()
      for i in range(n - 1):
        t0 = time.perf_counter()
        f = fn(frames[i], frames[i + 1])
        r['seconds'].append(time.perf_counter() - t0)
        both = ~occ[:, i] & ~occ[:, i + 1]
        r['gap1'] += list(np.linalg.norm(pts[both, i] + bilinear(f, pts[both, i])
                                         - pts[both, i + 1], axis=-1))
        pos = pos + bilinear(f, pos)
        if i + 4 < n and i % 4 == 0:
          f4 = fn(frames[i], frames[i + 4])
          both = ~occ[:, i] & ~occ[:, i + 4]
          r['gap4'] += list(np.linalg.norm(pts[both, i] + bilinear(f4, pts[both, i])
                                           - pts[both, i + 4], axis=-1))
      keep = ~occ[:, 0] & ~occ[:, -1]
      r['chain_end'] += list(np.linalg.norm(pos[keep] - pts[keep, -1], axis=-1))
    print(f'{name}: done', flush=True)
  out = {}
  for m, r in results.items():
    out[m] = {k: float(np.median(v)) for k, v in r.items()}
    out[m]['chain_end_within8'] = float((np.asarray(r['chain_end']) < 8).mean())
    print(f'video {m}: gap1 {out[m]["gap1"]:.2f} gap4 {out[m]["gap4"]:.2f} chain end '
          f'{out[m]["chain_end"]:.1f} (<8 px {100 * out[m]["chain_end_within8"]:.0f} %) '
          f'{out[m]["seconds"]:.3f} s/flow', flush=True)
  return out


def _timed_ms(fn, repeats: int) -> float:
  """Median wall ms of fn() (blocked until ready) over `repeats` runs after one warm-up."""
  import jax  # pylint: disable=g-import-not-at-top
  jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(1000 * (time.perf_counter() - start))
  return float(np.median(times))


def raft_speed(kind: str, size: tuple[int, int], chunk: int, repeats: int) -> dict:
  """One RAFT row: encoder ms per frame, pair ms, the chunk function's memory (module doc)."""
  import jax  # pylint: disable=g-import-not-at-top
  from skimage import data as skdata  # pylint: disable=g-import-not-at-top
  from omnimotion_jax.data.nets import raft, raft_infer  # pylint: disable=g-import-not-at-top
  config = raft.MODELS[kind]
  variables = raft.init_variables(config, jax.random.key(0))
  height, width = size
  frame = cv2.resize(skdata.astronaut(), (width, height), interpolation=cv2.INTER_AREA)
  padding = raft_infer.input_padding(height, width)
  frames = padding.pad(np.stack([frame, np.roll(frame, (3, -5), axis=(0, 1))]))
  devices = jax.devices()[:1]
  model = raft.RAFT(config)
  image = frames[0].astype(np.float32)
  encoder_ms = {}
  for name, method in (('fnet', raft.RAFT.features), ('cnet', raft.RAFT.context)):
    encode = jax.jit(functools.partial(model.apply, method=method))
    encoder_ms[name] = _timed_ms(functools.partial(encode, variables, image), repeats)
  features = raft_infer.encode_frames(config, variables, frames, devices=devices)
  pairs = np.tile([[0, 1]], (chunk, 1)).astype(np.int32)
  inits = np.zeros((chunk,) + features.fmap.shape[1:3] + (2,), np.float32)
  fn = raft_infer.compiled_pair_fn(config, RAFT_ITERS, False, tuple(devices))
  start = time.perf_counter()
  analysis = fn.lower(variables, features, pairs, inits).compile().memory_analysis()
  compile_s = time.perf_counter() - start
  chunk_ms = _timed_ms(lambda: fn(variables, features, pairs, inits), repeats)
  memory = {f: int(getattr(analysis, f'{f}_size_in_bytes', 0) or 0)
            for f in ('argument', 'output', 'temp')}
  h8, w8 = features.fmap.shape[1:3]
  row = {'kind': kind, 'size_hw': list(size), 'padded_hw': list(frames.shape[1:3]),
         'iters': RAFT_ITERS, 'chunk': chunk, 'compile_s': round(compile_s, 1),
         'ms_per_pair': round(chunk_ms / chunk, 1),
         'encoder_ms_per_frame': {k: round(v, 1) for k, v in encoder_ms.items()},
         'corr_volume_mb': round((h8 * w8) ** 2 * 4 / 2**20, 1),
         'chunk_memory_mb': {k: round(v / 2**20, 1) for k, v in memory.items()},
         'chunk_peak_mb': round(sum(memory.values()) / 2**20, 1),
         'host_peak_rss_mb': round(common.host_peak_rss_mb(), 1)}
  print(f'raft {kind} {width}x{height}: {row["ms_per_pair"]:.0f} ms/pair (chunk {chunk}), fnet '
        f'{encoder_ms["fnet"]:.0f} + cnet {encoder_ms["cnet"]:.0f} ms/frame, chunk peak '
        f'{row["chunk_peak_mb"]:.0f} MB (XLA), compile {compile_s:.0f} s', flush=True)
  return row


def exhaustive_cost(row: dict) -> list[dict]:
  """Hours for all N(N-1) ordered pairs, and the hours that encoding once per frame saves over
  the official per-pair code (2 fnet + 1 cnet per pair)."""
  fnet, cnet = row['encoder_ms_per_frame']['fnet'], row['encoder_ms_per_frame']['cnet']
  out = []
  for n in EXHAUSTIVE_FRAMES:
    pairs = n * (n - 1)
    ours_ms = pairs * row['ms_per_pair'] + n * (fnet + cnet)
    official_ms = pairs * (row['ms_per_pair'] + 2 * fnet + cnet)
    out.append({'kind': row['kind'], 'size_hw': row['size_hw'], 'frames': n, 'pairs': pairs,
                'hours': round(ours_ms / 3.6e6, 2),
                'hours_encoders_per_pair': round(official_ms / 3.6e6, 2),
                'saving_fraction': round(1 - ours_ms / official_ms, 3)})
  return out


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--frames_root', default=None,
                      help='folder of <id>/ (or <id>/input/) frame folders (jpg/png)')
  parser.add_argument('--resize', type=int, nargs=2, default=DEFAULT_RESIZE, metavar=('H', 'W'),
                      help='frames are resized to this size in px (default: %(default)s)')
  parser.add_argument('--gt', default=None)
  parser.add_argument('--methods', default=None, help='comma-separated subset')
  parser.add_argument('--stereo_side', type=int, default=480)
  parser.add_argument('--json', default=None)
  parser.add_argument('--raft', action='store_true', help='also the RAFT rows (module doc)')
  parser.add_argument('--raft_chunk', type=int, default=2, help='RAFT pairs per compiled call')
  parser.add_argument('--raft_repeats', type=int, default=2, help='timed RAFT calls per row')
  parser.add_argument('--skip_opencv', action='store_true', help='no OpenCV methods')
  args = parser.parse_args(argv)
  cv2.setNumThreads(1)
  methods = {} if args.skip_opencv else make_methods()
  if args.methods:
    methods = {m: methods[m] for m in args.methods.split(',')}
  out = {'opencv': cv2.__version__, 'stereo': stereo(methods, args.stereo_side)}
  if args.raft:
    rows = [raft_speed(kind, size, args.raft_chunk, args.raft_repeats)
            for size in RAFT_SIZES for kind in ('raft_small', 'raft')]
    info = common.device_info()
    out['raft'] = {'device': common.device_label(info), 'facts': info, 'weights': 'random',
                   'rows': rows, 'exhaustive': [e for r in rows for e in exhaustive_cost(r)]}
  if args.frames_root and args.gt:
    gt = np.load(args.gt)
    names = sorted({k.split('/')[0] for k in gt.files})
    out['video'] = video(methods, Path(args.frames_root), gt, names, tuple(args.resize))
  if args.json:
    Path(args.json).write_text(json.dumps(out, indent=1))
  return 0


if __name__ == '__main__':
  sys.exit(main())
