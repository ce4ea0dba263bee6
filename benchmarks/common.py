"""Shared helpers of the speed benchmarks: synthetic TrainData, machine description, memory, JSON.

`synthetic_train_data` builds a `sampler.TrainData` of any shape WITHOUT optical flow: every frame
is a crop of one real photo (skimage.data.astronaut) at a sub-pixel offset that follows a smooth
Lissajous path, so the flow of every pair is a constant, exactly known shift. This makes N = 250
frames at 256 x 256 cheap to set up (seconds) while the train step sees data of the real shape.

Pair plan: the product's 'banded' plan (omnimotion_jax.data.pairs.make_plan) with its default
gaps: all ordered pairs (i, j) with 1 <= |i - j| <= DENSE_GAP, plus forward pairs (i, i + g) for
g = 8, 16, 32, ... < N. Cycle masks are all True, occluded masks all False, so counts[i] = number
of pairs (i, .) for every pixel and pair_counts = H * W for every pair.
"""

import json
import os
import platform
import resource
import sys
from pathlib import Path

import cv2
import numpy as np

# Make `omnimotion_jax` and `configs` importable when run as `python benchmarks/x.py` from a checkout.
REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
  sys.path.insert(0, str(REPO_ROOT))

from omnimotion_jax.data import pairs as pairs_lib  # noqa: E402
from omnimotion_jax.train import sampler  # noqa: E402

RESULTS_DIR = Path(__file__).resolve().parent / 'results'

DENSE_GAP = 4            # All ordered pairs with gap <= this (frames).
FIRST_LONG_GAP = 8       # Then forward pairs with gaps 8, 16, 32, ... (frames).
MOTION_FRACTION = 0.125  # Amplitude of the camera path as a fraction of the frame size.
PERIOD_X = 40.0          # Period of the horizontal offset (frames).
PERIOD_Y = 60.0          # Period of the vertical offset (frames).
PHASE_Y = 1.0            # Phase of the vertical offset (radians).
BYTES_PER_MB = 2**20


def pair_plan(num_frames: int, dense_gap: int = DENSE_GAP,
              first_long_gap: int = FIRST_LONG_GAP) -> np.ndarray:
  """[P, 2] int32 ordered pairs of the banded plan: all with gap <= dense_gap, plus forward gaps
  first_long_gap, 2 first_long_gap, ... (< N), sorted by (i, j)."""
  return pairs_lib.make_plan('banded', num_frames, dense_gap, first_long_gap).pairs


def camera_offsets(num_frames: int, height: int, width: int) -> np.ndarray:
  """[N, 2] (x, y) sub-pixel offset of each frame's crop inside the texture (px)."""
  i = np.arange(num_frames, dtype=np.float64)
  ax, ay = MOTION_FRACTION * width, MOTION_FRACTION * height
  return np.stack([ax * np.sin(2 * np.pi * i / PERIOD_X),
                   ay * np.sin(2 * np.pi * i / PERIOD_Y + PHASE_Y)], -1)


def _texture(height: int, width: int) -> tuple[np.ndarray, int, int]:
  """The astronaut photo resized to the frame size plus a margin for the motion; (tex, mx, my)."""
  from skimage import data as skdata  # pylint: disable=g-import-not-at-top
  mx = int(np.ceil(MOTION_FRACTION * width)) + 2
  my = int(np.ceil(MOTION_FRACTION * height)) + 2
  tex = cv2.resize(skdata.astronaut(), (width + 2 * mx, height + 2 * my),
                   interpolation=cv2.INTER_AREA)
  return tex, mx, my


def synthetic_frames(num_frames: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
  """uint8 frames [N, H, W, 3] and their offsets [N, 2]: frame i at pixel p shows tex(p + m + o_i)."""
  tex, mx, my = _texture(height, width)
  offsets = camera_offsets(num_frames, height, width)
  frames = np.empty((num_frames, height, width, 3), np.uint8)
  for i, (ox, oy) in enumerate(offsets):
    matrix = np.array([[1.0, 0.0, mx + ox], [0.0, 1.0, my + oy]])
    frames[i] = cv2.warpAffine(tex, matrix, (width, height),
                               flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_REFLECT)
  return frames, offsets


def synthetic_train_data(num_frames: int, height: int, width: int) -> sampler.TrainData:
  """A TrainData (numpy arrays) of the given shape with exact shift flows; no optical flow run.

  Pixel p of frame i shows texture point p + o_i, which frame j shows at p + o_i - o_j, so the
  flow of pair (i, j) is the constant field o_i - o_j.
  """
  if num_frames < 2:
    raise ValueError('synthetic_train_data needs at least 2 frames.')
  frames, offsets = synthetic_frames(num_frames, height, width)
  pairs = pair_plan(num_frames)
  num_pairs = len(pairs)
  shift = (offsets[pairs[:, 0]] - offsets[pairs[:, 1]]).astype(np.float16)  # [P, 2]
  flows = np.empty((num_pairs, height, width, 2), np.float16)
  flows[...] = shift[:, None, None, :]
  per_frame = np.bincount(pairs[:, 0], minlength=num_frames).astype(np.float32)
  counts = np.broadcast_to(per_frame[:, None, None], (num_frames, height, width)).copy()
  return sampler.TrainData(
      frames=frames.astype(np.float32) / 255.0, pairs=pairs, flows=flows,
      cycle=np.ones((num_pairs, height, width), bool),
      occluded=np.zeros((num_pairs, height, width), bool),
      counts=counts, pair_counts=np.full((num_pairs,), float(height * width), np.float32),
      adjacent_pair=sampler.adjacent_pair_index(pairs, num_frames),
      size=np.asarray([num_frames, height, width], np.int32))


def train_data_bytes(data: sampler.TrainData) -> int:
  """Total size of the TrainData arrays (bytes)."""
  return int(sum(np.asarray(getattr(data, f)).nbytes for f in (
      'frames', 'pairs', 'flows', 'cycle', 'occluded', 'counts', 'pair_counts', 'adjacent_pair')))


# ------------------------------------------------------------------------------------------------
# Machine description and memory.


def cpu_model() -> str:
  """CPU model name from /proc/cpuinfo (falls back to platform.processor())."""
  try:
    for line in Path('/proc/cpuinfo').read_text().splitlines():
      if line.startswith('model name'):
        return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or 'unknown'


def cpu_flags() -> list[str]:
  """The SIMD feature flags relevant to matmul throughput (avx2, avx512*, amx*), if listed."""
  try:
    for line in Path('/proc/cpuinfo').read_text().splitlines():
      if line.startswith('flags'):
        flags = line.split(':', 1)[1].split()
        return sorted(f for f in flags if f.startswith(('avx2', 'avx512', 'amx', 'fma')))
  except OSError:
    pass
  return []


def usable_cores() -> int:
  """Cores this process may run on (affinity), else os.cpu_count()."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:
    return os.cpu_count() or 1


def total_memory_gb() -> float | None:
  try:
    for line in Path('/proc/meminfo').read_text().splitlines():
      if line.startswith('MemTotal'):
        return round(int(line.split()[1]) / 2**20, 1)
  except OSError:
    pass
  return None


def device_info() -> dict:
  """The accelerator (or CPU) jax runs on, the host CPU, and library versions."""
  import flax  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import jaxlib  # pylint: disable=g-import-not-at-top
  dev = jax.devices()[0]
  return {
      'platform': dev.platform,
      'device_kind': dev.device_kind,
      'num_devices': jax.device_count(),
      'cpu_model': cpu_model(),
      'cpu_flags': cpu_flags(),
      'cpu_cores': usable_cores(),
      'host_memory_gb': total_memory_gb(),
      'jax_version': jax.__version__,
      'jaxlib_version': jaxlib.__version__,
      'flax_version': flax.__version__,
      'python_version': platform.python_version(),
  }


def device_label(info: dict) -> str:
  """Short human-readable machine name, e.g. 'cpu: Intel Xeon (2 cores)' or 'gpu: NVIDIA H100'."""
  if info['platform'] == 'cpu':
    return f"cpu: {info['cpu_model']} ({info['cpu_cores']} cores)"
  return f"{info['platform']}: {info['device_kind']}"


def host_peak_rss_mb() -> float:
  """Peak resident set size of this process so far (MB; ru_maxrss is KiB on Linux)."""
  kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  scale = 1.0 if sys.platform != 'darwin' else 1.0 / 1024  # macOS reports bytes.
  return kib * scale / 1024.0


def device_peak_mb() -> float | None:
  """Peak bytes in use on the first accelerator (MB), or None on CPU / when not reported."""
  import jax  # pylint: disable=g-import-not-at-top
  dev = jax.devices()[0]
  if dev.platform == 'cpu':
    return None
  try:
    stats = dev.memory_stats() or {}
  except Exception:  # pylint: disable=broad-except
    return None
  peak = stats.get('peak_bytes_in_use')
  return None if peak is None else peak / BYTES_PER_MB


def peak_memory() -> dict:
  """{'peak_memory_mb': device peak on GPU/TPU else host peak RSS, 'peak_memory_kind': ...}."""
  host = host_peak_rss_mb()
  dev = device_peak_mb()
  if dev is not None:
    return {'peak_memory_mb': round(dev, 1), 'peak_memory_kind': 'device peak_bytes_in_use',
            'host_peak_rss_mb': round(host, 1)}
  return {'peak_memory_mb': round(host, 1), 'peak_memory_kind': 'host peak RSS',
          'host_peak_rss_mb': round(host, 1)}


def xla_cost(compiled) -> dict:
  """XLA's cost analysis of a compiled executable as one dict (older jax returned a list)."""
  try:
    cost = compiled.cost_analysis()
  except Exception:  # pylint: disable=broad-except
    return {}
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else {}
  return dict(cost or {})


# ------------------------------------------------------------------------------------------------
# JSON.


def _jsonable(value):
  if isinstance(value, dict):
    return {str(k): _jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_jsonable(v) for v in value]
  if isinstance(value, (np.integer,)):
    return int(value)
  if isinstance(value, (np.floating,)):
    return float(value)
  if isinstance(value, np.bool_):
    return bool(value)
  if isinstance(value, Path):
    return str(value)
  return value


def write_json(path: str | Path, payload) -> Path:
  """Writes payload as indented JSON (atomically: a temp file, then rename)."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_suffix(path.suffix + '.tmp')
  tmp.write_text(json.dumps(_jsonable(payload), indent=2, default=str) + '\n')
  tmp.replace(path)
  return path


def read_json(path: str | Path, default=None):
  path = Path(path)
  if not path.exists():
    return default
  return json.loads(path.read_text())


def append_json_row(path: str | Path, row: dict) -> Path:
  """Appends `row` to the JSON list at `path` (a suite's results file), creating it if needed."""
  rows = read_json(path, default=[])
  if isinstance(rows, dict):  # A single result written by a plain run: keep it as the first row.
    rows = [rows]
  rows.append(row)
  return write_json(path, rows)
