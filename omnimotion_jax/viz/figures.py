"""The still images of a run's report: loss curves, pseudo-depth snapshot strips, depth legend.

Written into workdir/report/ beside the videos (viz/videos.py); viz/report.py shows them.
"""

import json
import logging
import math
import re
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from omnimotion_jax import fileio
from omnimotion_jax import workdir as workdir_lib
from omnimotion_jax.viz import drawing
from omnimotion_jax.viz import videos

logger = logging.getLogger(__name__)

LOSS_PNG = 'losses.png'
OTHER_PNG = 'others.png'
DEPTH_LEGEND_PNG = 'depth_legend.png'
SNAPSHOT_PNG = 'depth_step_{step:06d}.png'
MAX_SNAPSHOTS = 8  # depth snapshots shown (evenly spaced over training, last one included).
MAX_SNAPSHOT_FRAMES = 6  # frames per snapshot strip.
MAX_OTHER_KEYS = 16  # plots in others.png.
PLOT_COLUMNS = 4  # small multiples per row.
PLOT_SIZE_IN = (3.2, 2.2)  # width, height of one small multiple, inches.
PLOT_DPI = 90
LEGEND_SIZE = (12, 256)  # depth legend (height, width) px.
AXIS_KEYS = ('step', 'wall_s')  # Keys of metrics.jsonl that are not plotted as values.
TOTAL_LOSS_KEY = 'loss'
LOSS_PREFIX = 'loss/'


def read_metrics(path: Path) -> list[dict]:
  """The records of a metrics.jsonl; blank and malformed lines (a half-written last one) skipped."""
  records = []
  for line in (path.read_text().splitlines() if path.exists() else []):
    try:
      record = json.loads(line)
    except ValueError:
      continue
    if isinstance(record, dict):
      records.append(record)
  return records


def _series(records: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
  """(steps, values) where `key` is a finite number (step: the record index if absent)."""
  steps, values = [], []
  for index, record in enumerate(records):
    value = record.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
      continue
    step = record.get('step', index)
    steps.append(step if isinstance(step, (int, float)) else index)
    values.append(float(value))
  return np.asarray(steps, np.float64), np.asarray(values, np.float64)


def list_snapshots(workdir: Path) -> list[tuple[int, Path]]:
  """[(step, path)] of the pseudo-depth snapshots (workdir.SNAPSHOT names), sorted by step."""
  folder = workdir / workdir_lib.SNAPSHOTS
  found = []
  for path in folder.iterdir() if folder.is_dir() else ():
    digits = re.sub(r'\D', '', path.name)
    if digits and path.name == workdir_lib.SNAPSHOT.format(step=int(digits)):
      found.append((int(digits), path))
  return sorted(found)


def _evenly(items: list, count: int) -> list:
  """At most `count` items, evenly spaced, first and last kept."""
  if len(items) <= count:
    return items
  picks = np.unique(np.round(np.linspace(0, len(items) - 1, count)).astype(int))
  return [items[i] for i in picks]


def _plot_grid(series: list[tuple[str, np.ndarray, np.ndarray]], path: Path, xlabel: str) -> Path:
  """Small multiples (one per series) as a PNG; log y for a series whose values are all > 0."""
  # The object-oriented Agg API, so no global pyplot backend is touched.
  columns = min(PLOT_COLUMNS, len(series))
  rows = math.ceil(len(series) / columns)
  figure = Figure(figsize=(PLOT_SIZE_IN[0] * columns, PLOT_SIZE_IN[1] * rows), dpi=PLOT_DPI)
  FigureCanvasAgg(figure)
  for k, (name, steps, values) in enumerate(series):
    axes = figure.add_subplot(rows, columns, k + 1)
    axes.plot(steps, values, linewidth=1.0, marker='.' if len(values) < 20 else None)
    if len(values) and np.all(values > 0) and values.max() > values.min():
      axes.set_yscale('log')  # Losses span decades; log shows late progress.
    axes.set_title(name, fontsize=9)
    axes.tick_params(labelsize=7)
    axes.grid(True, alpha=0.3)
    if k >= len(series) - columns:
      axes.set_xlabel(xlabel, fontsize=8)
  figure.tight_layout()
  with fileio.atomic_open(path) as f:
    figure.savefig(f, format='png')
  return path


def write_loss_plots(records: list[dict], report: Path) -> dict[str, Path]:
  """losses.png (total + every loss/<term>) and others.png (other numeric keys), if any data."""
  keys = list(dict.fromkeys(key for record in records for key in record))  # First-seen order.
  loss_keys = ([TOTAL_LOSS_KEY] if TOTAL_LOSS_KEY in keys else []) + sorted(
      k for k in keys if k.startswith(LOSS_PREFIX))
  other_keys = [k for k in keys if k not in loss_keys and k not in AXIS_KEYS]
  out = {}
  for name, png, names, limit in (('losses', LOSS_PNG, loss_keys, None),
                                  ('others', OTHER_PNG, other_keys, MAX_OTHER_KEYS)):
    series = [s for s in ((k, *_series(records, k)) for k in names) if len(s[2])][:limit]
    if series:
      out[name] = _plot_grid(series, report / png, 'step')
  return out


def write_snapshot_strips(workdir: Path, report: Path) -> list[tuple[int, Path, tuple]]:
  """[(step, png, (vmin, vmax))]: one colourised strip per shown snapshot, own range each."""
  strips = []
  for step, path in _evenly(list_snapshots(workdir), MAX_SNAPSHOTS):
    try:
      depth = np.load(path)
    except (OSError, ValueError) as error:
      logger.warning('%s: unreadable snapshot (%s)', path, error)
      continue
    depth = depth[None] if depth.ndim == 2 else depth
    if depth.ndim != 3 or not depth.size:
      continue
    depth = depth[_evenly(list(range(len(depth))), MAX_SNAPSHOT_FRAMES)]
    vmin, vmax = drawing.depth_range(depth)
    # One range per snapshot: the depth scale drifts during training, the ordering is what matters.
    strip = drawing.side_by_side(*drawing.colorize_depth(depth, vmin, vmax)[:, None])[0]
    png = videos.write_png(report / SNAPSHOT_PNG.format(step=step), strip)
    strips.append((step, png, (vmin, vmax)))
  return strips


def write_depth_legend(report: Path) -> Path:
  """A near (left) .. far (right) colour ramp of `drawing.colorize_depth`."""
  ramp = np.tile(np.linspace(0.0, 1.0, LEGEND_SIZE[1]), (LEGEND_SIZE[0], 1))
  return videos.write_png(report / DEPTH_LEGEND_PNG, drawing.colorize_depth(ramp, 0.0, 1.0))
