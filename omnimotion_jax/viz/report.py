"""A static, browsable HTML report of one run: workdir/report/index.html.

The page opens from disk with no server and fetches nothing: CSS is inline, there is no script,
and every `src` / `href` is a relative path to a file that exists when the page is written
(images and videos in report/, raw files in the workdir as ../NAME).

What it shows, each only when its input exists (otherwise a "missing" line naming the command that
produces it): the TAP-Vid metrics (eval.json; AJ, <delta^x_avg and OA x100 as TAP-Vid reports
them, TC in px); the videos of `viz.videos.render_outputs`; loss curves (metrics.jsonl: the total
`loss` and every `loss/<term>` in losses.png, log y where all values are positive; other numbers
in others.png); pseudo-depth snapshots during training; wall time per stage, the training summary
and the preprocessing facts; which workdir files exist; the resolved config.

`viz_command` (CLI `omnimotion-jax viz --workdir W`) renders the videos and writes the page.
"""

import datetime
import html
import json
import math
import os
from pathlib import Path

import numpy as np
from PIL import Image

from omnimotion_jax import fileio
from omnimotion_jax import workdir as workdir_lib
from omnimotion_jax.config import flatten_dict
from omnimotion_jax.errors import UserInputError
from omnimotion_jax.viz import figures
from omnimotion_jax.viz import videos

INDEX_NAME = 'index.html'
PERCENT = 100.0  # TAP-Vid tables report fractions x100.
# (column title, eval.json key, scale).
METRIC_COLUMNS = (
    ('AJ', 'average_jaccard', PERCENT),
    ('&lt;&delta;<sup>x</sup><sub>avg</sub>', 'average_pts_within_thresh', PERCENT),
    ('OA', 'occlusion_accuracy', PERCENT),
    ('TC (px)', 'temporal_coherence', 1.0),
)
DEFAULT_TRACKER = 'omnimotion'
SECONDS_PER_MINUTE = 60
# Small model-resolution videos are shown enlarged (integer factor) to at least this width.
MIN_VIDEO_DISPLAY_PX = 384

# Workdir artifacts: (file name, what it is, command that produces it; {w} = the workdir).
_PREPROCESS = 'omnimotion-jax preprocess VIDEO --workdir {w}'
_TRAIN = 'omnimotion-jax train --workdir {w}'
_TRACK = 'omnimotion-jax track --workdir {w}'
_EVAL = 'an evaluation run on synthetic / TAP-Vid data (omnimotion-jax eval ... --workdir {w})'
_VIZ = 'omnimotion-jax viz --workdir {w}'
_RUN = 'omnimotion-jax run VIDEO --workdir {w}'
ARTIFACTS = (
    (workdir_lib.CONFIG, 'resolved config', _TRAIN),
    (workdir_lib.PREPROCESS, 'preprocessing facts and timings', _PREPROCESS),
    (workdir_lib.STORE, 'preprocessed frames and correspondences', _PREPROCESS),
    (workdir_lib.METRICS, 'training log (losses per logged step)', _TRAIN),
    (workdir_lib.TRAIN_SUMMARY, 'training summary', _TRAIN),
    (workdir_lib.SNAPSHOTS, 'pseudo-depth snapshots during training', _TRAIN),
    (workdir_lib.TRACKS, 'tracks and occlusion', _TRACK),
    (workdir_lib.DEPTH, 'pseudo-depth of every frame', 'omnimotion-jax depth --workdir {w}'),
    (workdir_lib.TIMINGS, 'wall time per stage', _RUN),
    (workdir_lib.GT, 'ground-truth tracks (synthetic / TAP-Vid runs only)', _EVAL),
    (workdir_lib.EVAL, 'TAP-Vid metrics (synthetic / TAP-Vid runs only)', _EVAL),
)
# Video captions (name -> (title, what the viewer sees)), in page order (videos.VIDEO_NAMES).
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


# --- HTML pieces ----------------------------------------------------------------------------------

def _e(text) -> str:
  return html.escape(str(text), quote=True)


def _is_number(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def _fmt(value) -> str:
  if isinstance(value, bool):
    return 'yes' if value else 'no'
  if isinstance(value, int):
    return f'{value:,d}'
  if isinstance(value, float):
    return f'{value:.4g}' if math.isfinite(value) else str(value)
  if isinstance(value, (list, dict)):
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + '...'
  return str(value)


def _fmt_seconds(seconds) -> str:
  if not _is_number(seconds):
    return _fmt(seconds)
  if seconds < SECONDS_PER_MINUTE:
    return f'{seconds:.1f} s'
  return f'{seconds:.1f} s ({datetime.timedelta(seconds=round(seconds))})'


def _kv_table(title: str, items, time_suffix: str) -> str:
  """<h3>title</h3> and a (key, value) table; keys ending with `time_suffix` ('' = all): times."""
  body = ''.join(f'<tr><th>{_e(k)}</th><td class="num">'
                 f'{_e(_fmt_seconds(v) if k.endswith(time_suffix) else _fmt(v))}</td></tr>'
                 for k, v in items)
  return f'<h3>{title}</h3><table>{body}</table>'


def _missing(what: str, command: str, workdir: Path) -> str:
  return (f'<p class="missing">Missing: {_e(what)}. Produced by '
          f'<code>{_e(command.format(w=workdir))}</code>.</p>')


def _mean_value(value):
  """A metric as one float: numbers as is, lists (per video) averaged ignoring NaN."""
  if _is_number(value):
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
  trackers = [(name, v) for name, v in evaluation.items() if isinstance(v, dict)]
  rows = []
  for name, metrics in trackers or [(DEFAULT_TRACKER, evaluation)]:
    values = [_mean_value(metrics.get(key)) for _, key, _ in METRIC_COLUMNS]
    rows.append((name, [None if v is None else v * scale
                        for v, (_, _, scale) in zip(values, METRIC_COLUMNS)]))
  return rows


def _metrics_table(evaluation: dict) -> str:
  header = ''.join(f'<th>{title}</th>' for title, _, _ in METRIC_COLUMNS)
  body = ''
  for name, values in metrics_rows(evaluation):
    cells = ''.join(f'<td class="num">{"&ndash;" if v is None else f"{v:.2f}"}</td>'
                    for v in values)
    body += f'<tr><th>{_e(name)}</th>{cells}</tr>'
  return (f'<table><tr><th>tracker</th>{header}</tr>{body}</table>'
          '<p class="sub">AJ, &lt;&delta;<sup>x</sup><sub>avg</sub> and OA in % (higher is '
          'better); TC in px (lower is better). Per-video lists are averaged.</p>')


def _file_size(path: Path) -> str:
  if path.is_dir():
    return f'{sum(1 for _ in path.iterdir())} files'
  size = path.stat().st_size
  if size < 1024:
    return f'{size:.0f} B'
  for unit in ('KiB', 'MiB', 'GiB'):
    size /= 1024.0
    if size < 1024 or unit == 'GiB':
      return f'{size:.1f} {unit}'


def _status_section(workdir: Path) -> tuple[str, list[str]]:
  rows, missing = '', []
  for name, what, command in ARTIFACTS:
    path = workdir / name
    if path.exists():
      # Link files (relative to report/); folders are just named.
      label = _e(name) if path.is_dir() else f'<a href="../{_e(name)}">{_e(name)}</a>'
      rows += (f'<tr><td>{label}</td><td>{_e(what)}</td><td class="ok">present '
               f'({_e(_file_size(path))})</td></tr>')
    else:
      missing.append(name)
      rows += (f'<tr><td>{_e(name)}</td><td>{_e(what)}</td><td class="missing">missing: run '
               f'<code>{_e(command.format(w=workdir))}</code></td></tr>')
  return f'<table><tr><th>file</th><th>what</th><th>status</th></tr>{rows}</table>', missing


def _timings_section(workdir: Path) -> str:
  timings = workdir_lib.read_json(workdir / workdir_lib.TIMINGS)
  if isinstance(timings, dict) and timings:
    total = sum(v for v in timings.values() if _is_number(v))
    parts = [_kv_table('Wall time per stage', [*timings.items(), ('total', total)], '')]
  else:
    parts = [_missing(f'{workdir_lib.TIMINGS} (wall time per stage)', _RUN, workdir)]
  for title, name, time_suffix in (('Training', workdir_lib.TRAIN_SUMMARY, 'wall_s'),
                                   ('Preprocessing', workdir_lib.PREPROCESS, '_s')):
    facts = workdir_lib.read_json(workdir / name)
    if isinstance(facts, dict):
      parts.append(_kv_table(title, flatten_dict(facts).items(), time_suffix))
  return ''.join(parts)


def _display_width(poster: Path) -> int | None:
  """Display width (px) of a video whose poster is `poster`: its width, enlarged by an integer
  factor up to MIN_VIDEO_DISPLAY_PX; None if unknown."""
  try:
    with Image.open(poster) as image:
      width = image.width
  except (OSError, ValueError):
    return None
  return width * max(1, MIN_VIDEO_DISPLAY_PX // width)


def _videos_section(workdir: Path, report: Path) -> str:
  parts = []
  legend = report / figures.DEPTH_LEGEND_PNG
  for name in videos.VIDEO_NAMES:
    video = report / f'{name}.mp4'
    if not video.exists():
      continue
    title, caption = VIDEO_CAPTIONS.get(name, (name, ''))
    poster = report / f'{name}{videos.POSTER_SUFFIX}'
    attrs = ''
    if poster.exists():
      width = _display_width(poster)
      attrs = f' poster="{_e(poster.name)}"' + (f' width="{width}"' if width else '')
    extra = ''
    if name == 'depth' and legend.exists():
      extra = (f'<div class="legend">near <img src="{_e(legend.name)}" alt="depth colour '
               'scale"> far</div>')
    parts.append(f'<figure><video controls loop muted preload="metadata"{attrs} '
                 f'src="{_e(video.name)}"></video>{extra}<figcaption><b>{_e(title)}</b> '
                 f'(<a href="{_e(video.name)}">{_e(video.name)}</a>). {_e(caption)}'
                 '</figcaption></figure>')
  if parts:
    return ''.join(parts)
  needs = []
  if not (workdir / workdir_lib.STORE).exists():
    needs.append((workdir_lib.STORE, _PREPROCESS))
  if not (workdir / workdir_lib.TRACKS).exists() and not (workdir / workdir_lib.DEPTH).exists():
    needs.append((f'{workdir_lib.TRACKS} / {workdir_lib.DEPTH}', _TRACK))
  needs.append(('report videos', _VIZ))
  return ''.join(_missing(what, command, workdir) for what, command in needs)


def _snapshots_section(workdir: Path, strips) -> str:
  if not strips:
    return _missing(f'pseudo-depth snapshots ({workdir_lib.SNAPSHOTS}/{workdir_lib.SNAPSHOT})',
                    _TRAIN, workdir)
  parts = ['<p class="sub">Each strip uses its own colour range (red = near, blue = far): the '
           'depth scale drifts during training, the ordering of surfaces is what to look at.</p>']
  for step, png, (vmin, vmax) in strips:
    parts.append(f'<figure><img src="{_e(png.name)}" alt="pseudo-depth at step {step}">'
                 f'<figcaption>step {step:,d} (depth range {vmin:.3g}..{vmax:.3g})'
                 '</figcaption></figure>')
  return ''.join(parts)


def _config_section(workdir: Path) -> str:
  path = workdir / workdir_lib.CONFIG
  if not path.exists():
    return _missing(workdir_lib.CONFIG, _TRAIN, workdir)
  config = workdir_lib.read_json(path)
  text = json.dumps(config, indent=2, sort_keys=True) if config is not None else path.read_text()
  return (f'<details><summary>{workdir_lib.CONFIG} (<a href="../{workdir_lib.CONFIG}">raw</a>)'
          f'</summary><pre>{_e(text)}</pre></details>')


# --- entry points -------------------------------------------------------------------------------

def write_report(workdir: str | os.PathLike) -> Path:
  """Writes workdir/report/index.html (plus its PNGs) from whatever the workdir holds.

  Videos are not rendered here (see `videos.render_outputs` / `viz_command`); the page shows the
  ones already in report/.

  Args:
    workdir: the run folder (must exist).

  Returns:
    Path of index.html.
  """
  workdir = Path(workdir)
  report = workdir / workdir_lib.REPORT
  report.mkdir(parents=True, exist_ok=True)
  status, missing = _status_section(workdir)
  records = figures.read_metrics(workdir / workdir_lib.METRICS)
  plots = figures.write_loss_plots(records, report) if records else {}
  strips = figures.write_snapshot_strips(workdir, report)
  if (report / 'depth.mp4').exists() or strips:
    figures.write_depth_legend(report)

  # What people look at first (numbers, videos, curves), then the bookkeeping.
  sections = []
  if missing:
    sections.append(f'<p class="missing">Missing: {_e(", ".join(missing))} (see Status below). '
                    'The sections show what exists.</p>')
  evaluation = workdir_lib.read_json(workdir / workdir_lib.EVAL)
  if isinstance(evaluation, dict) and evaluation:
    sections.append(f'<h2>Metrics (<a href="../{workdir_lib.EVAL}">{workdir_lib.EVAL}</a>)</h2>'
                    f'{_metrics_table(evaluation)}')
  else:
    sections.append('<h2>Metrics</h2>' + _missing(
        f'{workdir_lib.EVAL} (TAP-Vid metrics; synthetic / TAP-Vid runs only)', _EVAL, workdir))
  sections.append(f'<h2>Videos</h2>{_videos_section(workdir, report)}')
  if plots:
    plot_html = {
        'losses': (f'<figure><img class="plot" src="{figures.LOSS_PNG}" alt="loss curves">'
                   f'<figcaption>Total loss and each term vs training step ({len(records)} logged steps); '
                   'log y where all values are positive.</figcaption></figure>'),
        'others': (f'<figure><img class="plot" src="{figures.OTHER_PNG}" alt="other logged values">'
                   '<figcaption>Other logged values.</figcaption></figure>')}
    sections.append(f'<h2>Training curves (<a href="../{workdir_lib.METRICS}">'
                    f'{workdir_lib.METRICS}</a>)</h2>' + ''.join(plot_html[k] for k in plots))
  else:
    sections.append('<h2>Training curves</h2>' + _missing(
        f'{workdir_lib.METRICS} (training log)', _TRAIN, workdir))
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
  return fileio.write_text_atomic(report / INDEX_NAME, page)


def viz_command(workdir: str | os.PathLike, fps: float = videos.DEFAULT_FPS) -> Path:
  """Renders the videos of `workdir` and writes its report; returns report/index.html.

  Raises:
    UserInputError: if `workdir` is not an existing folder.
  """
  workdir = Path(workdir)
  if not workdir.is_dir():
    raise UserInputError(f'{workdir}: no such workdir; pass the --workdir of a preprocess / train '
                         '/ track run.')
  videos.render_outputs(workdir, fps=fps)
  return write_report(workdir)
