"""The summary of a TAP-Vid suite run (evaluation/suite.py): OUT/summary.md and OUT/summary.json.

The mean metrics over every finished video (whatever shards produced them), per tracker, beside
the numbers the OmniMotion paper publishes for the same set, and one row per video.
"""

from pathlib import Path

import numpy as np

from omnimotion_jax import fileio
from omnimotion_jax import workdir as workdir_lib
from omnimotion_jax.evaluation import builders
from omnimotion_jax.evaluation import score

TRACKERS = score.TRACKERS
VIDEOS_DIR = 'videos'  # OUT/videos/<id>/result.json, written by the suite.
RESULT_FILE = 'result.json'
SUMMARY_MD = 'summary.md'
SUMMARY_JSON = 'summary.json'

# Headline metrics: (key in the results, column title, x100 as in the papers).
COLUMNS = (
    ('average_jaccard', 'AJ', True),
    ('average_pts_within_thresh', '<delta^x_avg', True),
    ('occlusion_accuracy', 'OA', True),
    ('temporal_coherence', 'TC (px)', False),
)
TRACKER_LABELS = {
    'omnimotion': 'OmniMotion (this JAX implementation)',
    # Chained integrates the store's adjacent flows; direct recomputes DIS flow from the query
    # frame (score.evaluate_workdir), on the same preprocessed frames.
    'chained': 'chained flow ({backend}), same input correspondences',
    'direct': 'direct flow ({backend}), same input frames',
}

# The OmniMotion paper's Table 1 (Wang et al., ICCV 2023): every method run by the paper's
# authors at 256x256 (Kinetics: a random 100-video subset), query mode strided. Values are
# AJ, <delta^x_avg, OA (x100) and TC (px), in COLUMNS order.
_TABLE_1_SETS = ('tapvid_kinetics', 'tapvid_davis', 'tapvid_rgb_stacking')
_TABLE_1 = (  # (method, Kinetics, DAVIS, RGB-Stacking), as _TABLE_1_SETS
    ('RAFT-C (chained RAFT, cycle-check occlusion)',
     (31.7, 51.7, 84.3, 0.82), (30.7, 46.6, 80.2, 0.93), (42.0, 56.4, 91.5, 0.18)),
    ('RAFT-D (direct RAFT)',
     (50.6, 66.9, 85.5, 3.00), (34.1, 48.9, 76.1, 9.83), (72.1, 85.1, 92.1, 1.04)),
    ('TAP-Net', (48.5, 61.7, 86.6, 6.65), (38.4, 53.4, 81.4, 10.82), (61.3, 73.7, 91.5, 1.52)),
    ('PIPs', (39.1, 55.3, 82.9, 1.30), (39.9, 56.0, 81.3, 1.78), (37.3, 50.6, 89.7, 0.84)),
    ('Flow-Walk-C', (40.9, 55.5, 84.5, 0.77), (35.2, 51.4, 80.6, 0.90), (41.3, 55.7, 92.2, 0.13)),
    ('Flow-Walk-D', (46.9, 65.9, 81.8, 3.04), (24.4, 40.9, 76.5, 10.41), (66.3, 82.7, 91.2, 0.47)),
    ('Deformable Sprites',
     (25.6, 39.5, 71.4, 1.70), (20.6, 32.9, 69.7, 2.07), (45.0, 58.3, 84.0, 0.99)),
    ('OmniMotion (TAP-Net input)',
     (53.8, 68.3, 88.8, 0.77), (50.9, 66.7, 85.7, 0.86), (73.4, 84.1, 92.2, 0.11)),
    ('OmniMotion (RAFT input)',
     (55.1, 69.6, 89.6, 0.76), (51.7, 67.5, 85.3, 0.74), (77.5, 87.0, 93.5, 0.13)),
)

# {dataset: ((method, {metric key: value}), ...)}.
PUBLISHED = {dataset: tuple((method, dict(zip((name for name, _, _ in COLUMNS), rows[column])))
                            for method, *rows in _TABLE_1)
             for column, dataset in enumerate(_TABLE_1_SETS)}
PUBLISHED['tapvid_synthetic'] = ()  # This project's own suite: nothing published.
PUBLISHED_NOTE = (
    'Published rows: Table 1 of the OmniMotion paper (Wang et al., "Tracking Everything Everywhere '
    'All at Once", ICCV 2023), every method run by its authors at 256x256 with strided queries.')


def format_value(value: float | None, x100: bool) -> str:
  if value is None or not np.isfinite(value):
    return '-'
  return f'{100 * value:.1f}' if x100 else f'{value:.3f}'


def _published_cell(value: float | None, x100: bool) -> str:
  if value is None:
    return '-'
  return f'{value:.1f}' if x100 else f'{value:.2f}'


def collect_results(out: Path, key: dict) -> dict[str, dict]:
  """Every OUT/videos/*/result.json matching `key` (hash, dataset, resolution, mode), by folder."""
  found = {}
  for path in sorted((out / VIDEOS_DIR).glob(f'*/{RESULT_FILE}')):
    result = workdir_lib.read_json(path)
    if result and all(result.get(k) == v for k, v in key.items()):
      found[path.parent.name] = result
  return found


def summarize(results: dict[str, dict]) -> dict:
  """Plain means over videos (TapNet's protocol), per tracker, over the videos that have it."""
  means = {}
  for tracker in TRACKERS:
    rows = [r['metrics'][tracker] for r in results.values() if tracker in r.get('metrics', {})]
    if not rows:
      continue
    means[tracker] = {name: float(np.nanmean([row[name] for row in rows]))
                      for name, _, _ in COLUMNS}
    means[tracker]['num_videos'] = len(rows)
  return means


def format_summary(summary: dict) -> str:
  """The markdown summary (our means, published numbers, per-video rows)."""
  backend = summary['flow_backend']
  header = '| method | ' + ' | '.join(title for _, title, _ in COLUMNS) + ' | videos |'
  rule = '|---|' + '---|' * (len(COLUMNS) + 1)
  progress = summary['progress']
  done_line = ('all selected videos are done' if progress['all_done'] else
               f'NOT all done: {progress["missing"]} of the {progress["selected"]} selected videos '
               'have no up-to-date result.json yet (other shards still running, or not started)')
  lines = [
      f'# TAP-Vid evaluation: {summary["dataset"]} ({summary["resolution"]}), '
      f'query mode {summary["query_mode"]}',
      '',
      f'- config: `{summary["config"]}` (hash `{summary["config_hash"]}`)',
      f'- videos included: {summary["num_included"]}; {done_line}.',
      f'- metrics at 256x256 as TapNet computes them; AJ, <delta^x_avg and OA x100, TC in px '
      '(lower is better); plain mean over videos.',
  ]
  if not summary['resolution'].endswith(builders.DEFAULT_CONFIG):  # '256x256' or 'mini_256x256'.
    lines.append(f'- note: frames at {summary["resolution"]}, not the TAP-Vid protocol\'s 256x256.')
  if summary['query_mode'] != 'strided' and summary['published']:
    lines.append('- note: the published numbers are strided; this run is '
                 f'{summary["query_mode"]}, so they are not directly comparable.')
  lines += ['', '## Means', '', header, rule]
  for tracker, m in summary['means'].items():
    label = TRACKER_LABELS[tracker].format(backend=backend)
    cells = ' | '.join(format_value(m[name], x100) for name, _, x100 in COLUMNS)
    lines.append(f'| ours: {label} | {cells} | {m["num_videos"]} |')
  if not summary['means']:
    lines.append('| ours: (no finished video yet) |' + ' - |' * (len(COLUMNS) + 1))
  for label, values in PUBLISHED.get(summary['dataset'], ()):
    cells = ' | '.join(_published_cell(values.get(name), x100) for name, _, x100 in COLUMNS)
    lines.append(f'| published: {label} | {cells} | - |')
  lines += ['', PUBLISHED_NOTE if summary['published'] else
            f'No published numbers exist for {summary["dataset"]}.']
  lines += ['', '## Per video', '',
            '| video | tracker | ' + ' | '.join(t for _, t, _ in COLUMNS) + ' | wall (s) |',
            '|---|---|' + '---|' * (len(COLUMNS) + 1)]
  for folder, result in summary['videos'].items():
    video_id = result.get('video_id', folder)
    for tracker, m in result.get('metrics', {}).items():
      cells = ' | '.join(format_value(m[name], x100) for name, _, x100 in COLUMNS)
      wall = result['wall_s'].get('total', 0)
      lines.append(f'| {video_id} | {tracker} | {cells} | {wall:.1f} |')
    if not result.get('metrics'):
      lines.append(f'| {video_id} | - |' + ' - |' * len(COLUMNS) + f' {result.get("note", "")} |')
  return '\n'.join(lines) + '\n'


def write_summary(out: Path, key: dict, selected: list[str], config_label: str,
                  flow_backend: str) -> dict:
  """Writes OUT/summary.md and OUT/summary.json from every matching result.json present.

  `selected` lists the folder names of the videos this run's selection covers (all shards), to
  say how many are still missing.
  """
  results = collect_results(out, key)
  missing = [name for name in selected if name not in results]
  summary = {
      **key, 'config': config_label, 'flow_backend': flow_backend,
      'num_included': sum(1 for r in results.values() if r.get('metrics')),
      'progress': {'selected': len(selected), 'done': len(selected) - len(missing),
                   'missing': len(missing), 'missing_ids': missing, 'all_done': not missing},
      'means': summarize(results),
      'published': {label: dict(values) for label, values in PUBLISHED.get(key['dataset'], ())},
      'videos': results,
  }
  workdir_lib.write_json(out / SUMMARY_JSON, summary)
  fileio.write_text_atomic(out / SUMMARY_MD, format_summary(summary))
  return summary
