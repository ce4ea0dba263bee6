"""A static, browsable HTML report of one run: workdir/report/index.html.

The page opens from disk with no server and fetches nothing: CSS is inline, there is no script,
and every `src` / `href` is a relative path to a file that exists when the page is written
(images and videos in report/, raw files in the workdir as ../NAME).

What it shows, each only when its input exists (otherwise a "missing" line naming the command that
produces it):
  * status: which workdir files exist (with links) and which are missing;
  * wall time per stage (timings.json), training summary (train.json), preprocessing facts
    (preprocess.json);
  * a TAP-Vid metrics table (eval.json): trackers as rows; AJ, <delta^x_avg, OA as percentages
    (x100, TAP-Vid convention; eval.json holds fractions) and TC in px;
  * loss curves (metrics.jsonl): one small plot per term `loss/<term>` plus the total `loss`
    (losses.png), log y where all values are positive; other logged numbers in others.png;
  * the videos written by `viz.render_outputs` (report/*.mp4, with poster PNGs);
  * pseudo-depth at a few training steps (snapshots/depth_XXXXXX.npy -> depth_step_XXXXXX.png);
  * the resolved config (config.json) in a collapsible block.

`viz_command` (CLI `omnimotion-jax viz --workdir W`) renders the videos and writes the page.
"""

import datetime
import html
import json
import logging
import math
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from omnimotion_jax import fileio
from omnimotion_jax.viz import drawing as viz
from omnimotion_jax.config import flatten_dict
from omnimotion_jax.errors import UserInputError

log = logging.getLogger(__name__)

REPORT_DIR = 'report'
INDEX_NAME = 'index.html'
LOSS_PNG = 'losses.png'
OTHER_PNG = 'others.png'
DEPTH_LEGEND_PNG = 'depth_legend.png'
SNAPSHOT_PATTERN = re.compile(r'^depth_(\d+)\.npy$')
SNAPSHOT_PNG = 'depth_step_{step:06d}.png'
MAX_SNAPSHOTS = 8  # depth snapshots shown (evenly spaced over training, last one included).
MAX_SNAPSHOT_FRAMES = 6  # frames per snapshot strip.
MAX_OTHER_KEYS = 16  # plots in others.png.
PLOT_COLUMNS = 4  # small multiples per row.
PLOT_SIZE_IN = (3.2, 2.2)  # width, height of one small multiple, inches.
PLOT_DPI = 90
LEGEND_SIZE = (12, 256)  # depth legend (height, width) px.
# Keys of metrics.jsonl that are not plotted as values.
AXIS_KEYS = ('step', 'wall_s')
TOTAL_LOSS_KEY = 'loss'
LOSS_PREFIX = 'loss/'
PERCENT = 100.0  # TAP-Vid tables report fractions x100.
# (column title, eval.json key, scale, unit suffix).
METRIC_COLUMNS = (
    ('AJ', 'average_jaccard', PERCENT, ''),
    ('&lt;&delta;<sup>x</sup><sub>avg</sub>', 'average_pts_within_thresh', PERCENT, ''),
    ('OA', 'occlusion_accuracy', PERCENT, ''),
    ('TC (px)', 'temporal_coherence', 1.0, ''),
)
DEFAULT_TRACKER = 'omnimotion'
SECONDS_PER_MINUTE = 60
# Small model-resolution videos are shown enlarged (integer factor) to at least this width.
MIN_VIDEO_DISPLAY_PX = 384

# Workdir artifacts: (relative path, what it is, command that produces it; {w} = the workdir).
_PREPROCESS = 'omnimotion-jax preprocess VIDEO --workdir {w}'
_TRAIN = 'omnimotion-jax train --workdir {w}'
_TRACK = 'omnimotion-jax track --workdir {w}'
_EVAL = 'an evaluation run on synthetic / TAP-Vid data (omnimotion-jax eval ... --workdir {w})'
_VIZ = 'omnimotion-jax viz --workdir {w}'
_DEPTH = 'omnimotion-jax depth --workdir {w}'
ARTIFACTS = (
    ('config.json', 'resolved config', _TRAIN),
    ('preprocess.json', 'preprocessing facts and timings', _PREPROCESS),
    ('sequence.npz', 'preprocessed frames and correspondences', _PREPROCESS),
    ('metrics.jsonl', 'training log (losses per logged step)', _TRAIN),
    ('train.json', 'training summary', _TRAIN),
    ('snapshots', 'pseudo-depth snapshots during training', _TRAIN),
    ('tracks.npz', 'tracks and occlusion', _TRACK),
    ('depth.npy', 'pseudo-depth of every frame', _DEPTH),
    ('timings.json', 'wall time per stage', 'omnimotion-jax run VIDEO --workdir {w}'),
    ('gt.npz', 'ground-truth tracks (synthetic / TAP-Vid runs only)', _EVAL),
    ('eval.json', 'TAP-Vid metrics (synthetic / TAP-Vid runs only)', _EVAL),
)
# Video captions (name -> (title, what the viewer sees)), in page order (viz.VIDEO_NAMES).
VIDEO_CAPTIONS = {
    'side_by_side': ('Input | tracks | pseudo-depth', 'The three panels play in lockstep.'),
    'tracks': ('Tracks', 'Every drawn point is coloured by its position in its query frame (a '
               'colour wheel around the frame centre); dots are visible points, crosses occluded '
               'ones.'),
    'trails': ('Trails', 'Foreground points with fading tails over the past frames, coloured by '
               'point index (jet). With a foreground mask (masks/ or mask.png) the camera motion '
               '(median background motion) is taken out; without one all points are drawn as '
               'plain trails.'),
    'depth': ('Pseudo-depth', 'Expected depth per pixel with one colour range for the whole video '
              '(1st..99th percentile): red = near, blue = far.'),
    'gt_comparison': ('Prediction vs ground truth', 'White ring = ground truth, dot = prediction, '
                      'line between them coloured by the error (green = 0 px, red = at or above '
                      'the largest TAP-Vid threshold, 16 px at 256 px). Magenta: predicted '
                      'occlusion disagrees with the ground truth (cross = missed visible point, '
                      'dot = point predicted visible but occluded). Grey cross: both occluded.'),
}

_CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif;
       margin: 1.5em auto; max-width: 1200px; padding: 0 1em; color: #222; background: #fafafa; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc;
     padding-bottom: 0.2em; margin-top: 1.6em; font-size: 1.2em; }
.sub { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.95em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #eee; }
.missing { color: #a33; } .ok { color: #282; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
pre { background: #f0f0f0; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
figure { margin: 0.8em 0 1.4em 0; } figcaption { color: #444; font-size: 0.9em; max-width: 900px; }
video, img { max-width: 100%; image-rendering: pixelated; border: 1px solid #ccc; }
img.plot { image-rendering: auto; }
.legend { display: flex; align-items: center; gap: 0.5em; font-size: 0.9em; }
.legend img { width: 256px; height: 12px; }
"""


# --- reading the workdir ------------------------------------------------------------------------

def _read_json(path: Path):
  """Parsed JSON of `path`, or None when missing or unreadable (logged)."""
  if not path.exists():
    return None
  try:
    return json.loads(path.read_text())
  except (OSError, ValueError) as error:
    log.warning('%s: not readable JSON (%s)', path, error)
    return None


def read_metrics(path: Path) -> list[dict]:
  """The records of a metrics.jsonl; blank and malformed lines (e.g. a half-written last line)
  are skipped."""
  records = []
  if not path.exists():
    return records
  for line in path.read_text().splitlines():
    line = line.strip()
    if not line:
      continue
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
  """[(step, path)] of snapshots/depth_XXXXXX.npy, sorted by step."""
  folder = workdir / 'snapshots'
  if not folder.is_dir():
    return []
  found = []
  for path in folder.iterdir():
    match = SNAPSHOT_PATTERN.match(path.name)
    if match:
      found.append((int(match.group(1)), path))
  return sorted(found)


def _evenly(items: list, count: int) -> list:
  """At most `count` items, evenly spaced, first and last kept."""
  if len(items) <= count:
    return items
  picks = np.unique(np.round(np.linspace(0, len(items) - 1, count)).astype(int))
  return [items[i] for i in picks]


# --- images -------------------------------------------------------------------------------------

def _plot_grid(series: list[tuple[str, np.ndarray, np.ndarray]], path: Path, xlabel: str) -> Path:
  """Small multiples (one per series) as a PNG; log y for a series whose values are all > 0."""
  # The object-oriented Agg API, so no global pyplot backend is touched.
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure
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
  tmp = path.with_name(f'.{path.name}.tmp.png')
  figure.savefig(tmp, format='png')
  os.replace(tmp, path)
  return path


def write_loss_plots(records: list[dict], report: Path) -> dict[str, Path]:
  """losses.png (total + every loss/<term>) and others.png (other numeric keys), if any data."""
  out = {}
  keys = []
  for record in records:
    for key in record:
      if key not in keys:
        keys.append(key)
  loss_keys = ([TOTAL_LOSS_KEY] if TOTAL_LOSS_KEY in keys else []) + sorted(
      k for k in keys if k.startswith(LOSS_PREFIX))
  other_keys = [k for k in keys if k not in loss_keys and k not in AXIS_KEYS]
  loss_series = [(k, *_series(records, k)) for k in loss_keys]
  loss_series = [s for s in loss_series if len(s[2])]
  if loss_series:
    out['losses'] = _plot_grid(loss_series, report / LOSS_PNG, 'step')
  other_series = [(k, *_series(records, k)) for k in other_keys]
  other_series = [s for s in other_series if len(s[2])][:MAX_OTHER_KEYS]
  if other_series:
    out['others'] = _plot_grid(other_series, report / OTHER_PNG, 'step')
  return out


def write_snapshot_strips(workdir: Path, report: Path) -> list[tuple[int, Path, tuple]]:
  """[(step, png, (vmin, vmax))]: one colourised strip per shown snapshot, own range each."""
  strips = []
  for step, path in _evenly(list_snapshots(workdir), MAX_SNAPSHOTS):
    try:
      depth = np.load(path)
    except (OSError, ValueError) as error:
      log.warning('%s: unreadable snapshot (%s)', path, error)
      continue
    depth = depth[None] if depth.ndim == 2 else depth
    if depth.ndim != 3 or not depth.size:
      continue
    depth = depth[_evenly(list(range(len(depth))), MAX_SNAPSHOT_FRAMES)]
    vmin, vmax = viz.depth_range(depth)
    # One range per snapshot: the depth scale drifts during training, the ordering is what matters.
    strip = viz.side_by_side(*viz.colorize_depth(depth, vmin, vmax)[:, None])[0]
    png = viz.write_png(report / SNAPSHOT_PNG.format(step=step), strip)
    strips.append((step, png, (vmin, vmax)))
  return strips


def _write_depth_legend(report: Path) -> Path:
  ramp = np.tile(np.linspace(0.0, 1.0, LEGEND_SIZE[1]), (LEGEND_SIZE[0], 1))
  return viz.write_png(report / DEPTH_LEGEND_PNG, viz.colorize_depth(ramp, 0.0, 1.0))


# --- HTML pieces ----------------------------------------------------------------------------------

def _e(text) -> str:
  return html.escape(str(text), quote=True)


def _fmt(value) -> str:
  if isinstance(value, bool):
    return 'yes' if value else 'no'
  if isinstance(value, int):
    return f'{value:,d}'
  if isinstance(value, float):
    if not math.isfinite(value):
      return str(value)
    return f'{value:.4g}'
  if isinstance(value, (list, dict)):
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + '...'
  return str(value)


def _fmt_seconds(seconds) -> str:
  if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
    return _fmt(seconds)
  if seconds < SECONDS_PER_MINUTE:
    return f'{seconds:.1f} s'
  return f'{seconds:.1f} s ({datetime.timedelta(seconds=round(seconds))})'


def _flatten(data) -> list[tuple[str, object]]:
  return list(flatten_dict(data).items()) if isinstance(data, dict) else [('value', data)]


def _kv_table(rows: list[tuple[str, str]]) -> str:
  body = ''.join(f'<tr><th>{_e(k)}</th><td class="num">{_e(v)}</td></tr>' for k, v in rows)
  return f'<table>{body}</table>'


def _missing(what: str, command: str) -> str:
  return f'<p class="missing">Missing: {_e(what)}. Produced by <code>{_e(command)}</code>.</p>'


def _mean_value(value):
  """A metric as one float: numbers as is, lists (per video) averaged ignoring NaN."""
  if isinstance(value, bool):
    return None
  if isinstance(value, (int, float)):
    return float(value)
  if isinstance(value, list):
    try:
      array = np.asarray(value, np.float64)
    except (TypeError, ValueError):
      return None
    if array.size and np.isfinite(array).any():
      return float(np.nanmean(array))
  return None


def metrics_rows(evaluation: dict) -> list[tuple[str, list[float | None]]]:
  """[(tracker, [column values, already scaled])] from eval.json (nested per tracker or flat)."""
  if any(isinstance(v, dict) for v in evaluation.values()):
    trackers = [(name, v) for name, v in evaluation.items() if isinstance(v, dict)]
  else:
    trackers = [(DEFAULT_TRACKER, evaluation)]
  rows = []
  for name, metrics in trackers:
    values = []
    for _, key, scale, _ in METRIC_COLUMNS:
      value = _mean_value(metrics.get(key))
      values.append(None if value is None else value * scale)
    rows.append((name, values))
  return rows


def _metrics_table(evaluation: dict) -> str:
  header = ''.join(f'<th>{title}</th>' for title, _, _, _ in METRIC_COLUMNS)
  body = ''
  for name, values in metrics_rows(evaluation):
    cells = ''.join(f'<td class="num">{"&ndash;" if v is None else f"{v:.2f}"}</td>'
                    for v in values)
    body += f'<tr><th>{_e(name)}</th>{cells}</tr>'
  return (f'<table><tr><th>tracker</th>{header}</tr>{body}</table>'
          '<p class="sub">AJ, &lt;&delta;<sup>x</sup><sub>avg</sub> and OA in % '
          '(higher is better); '
          'TC in px (lower is better). Per-video lists are averaged.</p>')


def _file_size(path: Path) -> str:
  if path.is_dir():
    return f'{sum(1 for _ in path.iterdir())} files'
  size = path.stat().st_size
  for unit in ('B', 'KiB', 'MiB', 'GiB'):
    if size < 1024 or unit == 'GiB':
      return f'{size:.0f} {unit}' if unit == 'B' else f'{size:.1f} {unit}'
    size /= 1024.0
  return ''


def _status_section(workdir: Path) -> tuple[str, list[str]]:
  rows, missing = '', []
  for name, what, command in ARTIFACTS:
    path = workdir / name
    command = command.format(w=workdir)
    if path.exists():
      # Link files (relative to report/); folders are just named.
      label = _e(name) if path.is_dir() else f'<a href="../{_e(name)}">{_e(name)}</a>'
      rows += (f'<tr><td>{label}</td><td>{_e(what)}</td><td class="ok">present '
               f'({_e(_file_size(path))})</td></tr>')
    else:
      missing.append(name)
      rows += (f'<tr><td>{_e(name)}</td><td>{_e(what)}</td><td class="missing">missing: run '
               f'<code>{_e(command)}</code></td></tr>')
  table = f'<table><tr><th>file</th><th>what</th><th>status</th></tr>{rows}</table>'
  return table, missing


def _timings_section(workdir: Path) -> str:
  parts = []
  timings = _read_json(workdir / 'timings.json')
  if isinstance(timings, dict) and timings:
    rows = [(stage, _fmt_seconds(seconds)) for stage, seconds in timings.items()]
    total = sum(v for v in timings.values() if isinstance(v, (int, float)) and not
                isinstance(v, bool))
    rows.append(('total', _fmt_seconds(total)))
    parts.append('<h3>Wall time per stage</h3>' + _kv_table(rows))
  else:
    parts.append(_missing('timings.json (wall time per stage)',
                          f'omnimotion-jax run VIDEO --workdir {workdir}'))
  train = _read_json(workdir / 'train.json')
  if isinstance(train, dict):
    rows = [(k, _fmt_seconds(v) if k.endswith('wall_s') else _fmt(v)) for k, v in _flatten(train)]
    parts.append('<h3>Training</h3>' + _kv_table(rows))
  preprocess = _read_json(workdir / 'preprocess.json')
  if isinstance(preprocess, dict):
    rows = [(k, _fmt_seconds(v) if k.endswith('_s') else _fmt(v))
            for k, v in _flatten(preprocess)]
    parts.append('<h3>Preprocessing</h3>' + _kv_table(rows))
  return ''.join(parts)


def _display_width(poster: Path) -> int | None:
  """Display width (px) of a video whose poster is `poster`: its width, enlarged by an integer
  factor up to MIN_VIDEO_DISPLAY_PX; None if unknown."""
  try:
    from PIL import Image
    with Image.open(poster) as image:
      width = image.width
  except (OSError, ValueError):
    return None
  return width * max(1, MIN_VIDEO_DISPLAY_PX // width)


def _videos_section(workdir: Path, report: Path) -> str:
  parts = []
  legend = report / DEPTH_LEGEND_PNG
  for name in viz.VIDEO_NAMES:
    video = report / f'{name}.mp4'
    if not video.exists():
      continue
    title, caption = VIDEO_CAPTIONS.get(name, (name, ''))
    poster = report / f'{name}{viz.POSTER_SUFFIX}'
    attrs = ''
    if poster.exists():
      attrs = f' poster="{_e(poster.name)}"'
      width = _display_width(poster)
      attrs += f' width="{width}"' if width else ''
    extra = ''
    if name == 'depth' and legend.exists():
      extra = (f'<div class="legend">near <img src="{_e(legend.name)}" alt="depth colour '
               'scale"> far</div>')
    parts.append(f'<figure><video controls loop muted preload="metadata"{attrs} '
                 f'src="{_e(video.name)}"></video>{extra}<figcaption><b>{_e(title)}</b> '
                 f'(<a href="{_e(video.name)}">{_e(video.name)}</a>). {_e(caption)}'
                 '</figcaption></figure>')
  if not parts:
    needs = []
    if not (workdir / 'sequence.npz').exists():
      needs.append(('sequence.npz', _PREPROCESS))
    if not (workdir / 'tracks.npz').exists() and not (workdir / 'depth.npy').exists():
      needs.append(('tracks.npz / depth.npy', _TRACK))
    needs.append(('report videos', _VIZ))
    return ''.join(_missing(what, command.format(w=workdir)) for what, command in needs)
  return ''.join(parts)


def _snapshots_section(workdir: Path, strips) -> str:
  if not strips:
    return _missing('pseudo-depth snapshots (snapshots/depth_XXXXXX.npy)',
                    _TRAIN.format(w=workdir))
  parts = ['<p class="sub">Each strip uses its own colour range (red = near, blue = far): the '
           'depth scale drifts during training, the ordering of surfaces is what to look at.</p>']
  for step, png, (vmin, vmax) in strips:
    parts.append(f'<figure><img src="{_e(png.name)}" alt="pseudo-depth at step {step}">'
                 f'<figcaption>step {step:,d} (depth range {vmin:.3g}..{vmax:.3g})'
                 '</figcaption></figure>')
  return ''.join(parts)


def _config_section(workdir: Path) -> str:
  path = workdir / 'config.json'
  if not path.exists():
    return _missing('config.json', _TRAIN.format(w=workdir))
  config = _read_json(path)
  text = json.dumps(config, indent=2, sort_keys=True) if config is not None else path.read_text()
  return (f'<details><summary>config.json (<a href="../config.json">raw</a>)</summary>'
          f'<pre>{_e(text)}</pre></details>')


def _write_atomic(path: Path, text: str) -> Path:
  return fileio.write_text_atomic(path, text)


# --- entry points -------------------------------------------------------------------------------

def write_report(workdir: str | os.PathLike) -> Path:
  """Writes workdir/report/index.html (plus its PNGs) from whatever the workdir holds.

  Videos are not rendered here (see `viz.render_outputs` / `viz_command`); the page shows the
  ones already in report/.

  Args:
    workdir: the run folder (must exist).

  Returns:
    Path of index.html.
  """
  workdir = Path(workdir)
  report = workdir / REPORT_DIR
  report.mkdir(parents=True, exist_ok=True)
  status, missing = _status_section(workdir)

  records = read_metrics(workdir / 'metrics.jsonl')
  plots = write_loss_plots(records, report) if records else {}
  strips = write_snapshot_strips(workdir, report)
  if (report / 'depth.mp4').exists() or strips:
    _write_depth_legend(report)

  # What people look at first (numbers, videos, curves), then the bookkeeping.
  sections = []
  if missing:
    sections.append(f'<p class="missing">Missing: {_e(", ".join(missing))} (see Status below). '
                    'The sections show what exists.</p>')

  evaluation = _read_json(workdir / 'eval.json')
  if isinstance(evaluation, dict) and evaluation:
    sections.append(f'<h2>Metrics (<a href="../eval.json">eval.json</a>)</h2>'
                    f'{_metrics_table(evaluation)}')
  else:
    sections.append('<h2>Metrics</h2>' + _missing(
        'eval.json (TAP-Vid metrics; synthetic / TAP-Vid runs only)', _EVAL.format(w=workdir)))

  sections.append(f'<h2>Videos</h2>{_videos_section(workdir, report)}')

  if plots:
    loss_html = ''
    if 'losses' in plots:
      loss_html += (f'<figure><img class="plot" src="{LOSS_PNG}" alt="loss curves"><figcaption>'
                    f'Total loss and each term vs training step ({len(records)} logged steps); '
                    'log y where all values are positive.</figcaption></figure>')
    if 'others' in plots:
      loss_html += (f'<figure><img class="plot" src="{OTHER_PNG}" alt="other logged values">'
                    '<figcaption>Other logged values.</figcaption></figure>')
    sections.append(f'<h2>Training curves (<a href="../metrics.jsonl">metrics.jsonl</a>)</h2>'
                    f'{loss_html}')
  else:
    sections.append('<h2>Training curves</h2>' + _missing('metrics.jsonl (training log)',
                                                          _TRAIN.format(w=workdir)))

  sections.append(f'<h2>Pseudo-depth during training</h2>{_snapshots_section(workdir, strips)}')
  sections.append(f'<h2>Wall time</h2>{_timings_section(workdir)}')
  sections.append(f'<h2>Status</h2>{status}')
  sections.append(f'<h2>Config</h2>{_config_section(workdir)}')

  now = datetime.datetime.now().strftime('%Y-%m-%d %H:%M:%S')
  page = ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
          f'<title>OmniMotion run: {_e(workdir.name)}</title><style>{_CSS}</style></head><body>'
          f'<h1>OmniMotion run: {_e(workdir.name)}</h1>'
          f'<p class="sub">{_e(workdir.resolve())} &middot; report written {_e(now)}</p>'
          + ''.join(sections) + '</body></html>\n')
  return _write_atomic(report / INDEX_NAME, page)


def viz_command(workdir: str | os.PathLike, fps: float = viz.DEFAULT_FPS) -> Path:
  """Renders the videos of `workdir` and writes its report; returns report/index.html.

  Raises:
    UserInputError: if `workdir` is not an existing folder.
  """
  workdir = Path(workdir)
  if not workdir.is_dir():
    raise UserInputError(f'{workdir}: no such workdir; pass the --workdir of a preprocess / train '
                         '/ track run.')
  viz.render_outputs(workdir, fps=fps)
  return write_report(workdir)
