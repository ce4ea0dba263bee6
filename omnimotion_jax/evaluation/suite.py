"""One-command, resumable TAP-Vid evaluation: `omnimotion-jax eval`.

For every video of a TAP-Vid set, at 256x256 (the TAP-Vid protocol, and what OmniMotion's authors
ran everything at, paper Table 1):
  1. sample the queries with TapNet's samplers for the query mode ('strided': every track visible
     at frames 0, 5, 10, ..., with its trackgroup; 'first': each track at its first visible frame);
  2. preprocess the decoded frames and optimise the model (skipped with --baseline), in
     OUT/videos/<id>/run_<hash> (hash of the config without its `track` section, so new
     occlusion thresholds re-track the trained model);
  3. track the queries and score OmniMotion and the chained-/direct-flow baselines, all built on
     the same input correspondences, with `score.evaluate_workdir` (TapNet-identical metrics
     plus TC, at 256x256);
  4. write OUT/videos/<id>/result.json (metrics per tracker, wall time per stage, config hash).
After the videos it writes OUT/summary.md and OUT/summary.json (evaluation/summary.py): the mean
metrics over every finished video (whatever shards produced them) beside the published numbers.

Resuming: a video whose result.json has the same config hash, dataset, resolution and query mode,
and already holds every requested tracker, is skipped. An interrupted video resumes inside its
run folder (preprocessing skips finished work, training restarts from the newest checkpoint).

Sharding: `shard=(i, n)` (CLI `--shard i/n`) evaluates videos i, i+n, i+2n, ... of the selection;
without it, a multi-process JAX job uses (jax.process_index(), jax.process_count()). Every shard
rewrites the summary from all result.json files present when it finishes, so the last shard to
finish leaves the complete summary; re-running any shard's command later also rewrites it (every
finished video is skipped).

Commands:
  omnimotion-jax eval --dataset tapvid_davis --query_mode strided --config paper \
      --manual_dir /data/tapvid --data_dir /data/tfds --out results/davis_strided
  omnimotion-jax eval --dataset tapvid_synthetic --resolution mini_256x256 --config cpu_tiny \
      --baseline chained --out /tmp/synth      # no manual files needed
"""

import logging
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path

import ml_collections

from omnimotion_jax import pipeline
from omnimotion_jax import workdir as workdir_lib
from omnimotion_jax.config import config_hash, load_config
from omnimotion_jax.errors import UserInputError
from omnimotion_jax.evaluation import builders
from omnimotion_jax.evaluation import score
from omnimotion_jax.evaluation import summary as summary_lib
from omnimotion_jax.evaluation import workers as workers_lib
from omnimotion_jax.evaluation.summary import RESULT_FILE, SUMMARY_MD, TRACKERS, VIDEOS_DIR
from omnimotion_jax.tapvid import queries

logger = logging.getLogger(__name__)

QUERY_MODES = ('strided', 'first')
BASELINES = ('chained', 'direct')
DEFAULT_RESOLUTION = builders.DEFAULT_CONFIG  # '256x256': the TAP-Vid protocol.
# TFDS's own default when neither --data_dir nor $TFDS_DATA_DIR is given.
DEFAULT_DATA_DIR = Path.home() / 'tensorflow_datasets'

RUN_DIR_PREFIX = 'run_'  # + model_hash: a new `track` config re-tracks the trained model.
TRACK_ONLY_SECTIONS = ('track',)
# Characters kept in a video's folder name; anything else becomes '_'.
UNSAFE_NAME_CHARS = re.compile(r'[^A-Za-z0-9._-]')


# --- argument parsing -------------------------------------------------------------------------

def parse_shard(shard: str | Sequence[int] | None) -> tuple[int, int] | None:
  """'i/n' (or (i, n)) -> (i, n) with 0 <= i < n; None stays None."""
  if shard is None:
    return None
  if isinstance(shard, str):
    match = re.fullmatch(r'\s*(\d+)\s*/\s*(\d+)\s*', shard)
    if not match:
      raise UserInputError(f'--shard {shard!r}: expected i/n with integers 0 <= i < n, e.g. '
                           '--shard 0/4 for the first of four shards.')
    index, count = int(match.group(1)), int(match.group(2))
  else:
    index, count = (int(v) for v in shard)
  if count < 1 or not 0 <= index < count:
    raise UserInputError(f'--shard {index}/{count}: the shard index must lie in 0..n-1 and n >= 1, '
                         f'e.g. --shard 0/{max(count, 2)}.')
  return index, count


def parse_videos(videos: str | Sequence[str | int] | None) -> list[str] | None:
  """'a,b' or a list -> a list of ids/positions (as str); None -> None (all videos)."""
  if videos is None:
    return None
  items = videos.split(',') if isinstance(videos, str) else [str(v) for v in videos]
  items = [item.strip() for item in items if item.strip()]
  if not items:
    raise UserInputError('--videos: empty list; pass comma-separated video ids or positions '
                         '(e.g. --videos 0,3 or --videos bear,camel), or leave it out for all.')
  return items


def safe_name(video_id: str) -> str:
  """A folder name for a video id (TAP-Vid ids are plain, but Kinetics ids may hold anything)."""
  return UNSAFE_NAME_CHARS.sub('_', video_id).strip('.') or '_'


def folder_names(all_ids: list[str]) -> list[str]:
  """One distinct folder name per video: safe_name(id), plus '_<position>' where names clash."""
  names = [safe_name(video_id) for video_id in all_ids]
  clashes = {name for name in names if names.count(name) > 1}
  return [f'{name}_{index}' if name in clashes else name for index, name in enumerate(names)]


# --- dataset access ---------------------------------------------------------------------------

def list_videos(dataset: str, data_dir: Path, manual_dir, resolution: str) -> list[str]:
  """The ids of the set's videos in split order, preparing the set first if needed."""
  return builders.video_ids(builders.prepared_builder(dataset, data_dir, manual_dir, resolution))


def select_videos(all_ids: list[str], wanted: list[str] | None, dataset: str) -> list[int]:
  """Positions of the wanted videos: each item is a video id, else a position in the split."""
  if wanted is None:
    return list(range(len(all_ids)))
  positions = {video_id: index for index, video_id in reversed(list(enumerate(all_ids)))}
  selected = []
  for item in wanted:
    if item in positions:
      index = positions[item]
    elif item.lstrip('-').isdigit() and 0 <= int(item) < len(all_ids):
      index = int(item)
    else:
      shown = ', '.join(all_ids[:8]) + (', ...' if len(all_ids) > 8 else '')
      raise UserInputError(f'--videos {item}: {dataset} has no such video id, and positions run '
                           f'0..{len(all_ids) - 1}; ids are {shown}.')
    if index not in selected:
      selected.append(index)
  return selected


def sample_queries(example: dict, query_mode: str) -> dict:
  """TapNet's query sampling for one example -> query_points [Q,3], target_points, occluded."""
  sampler = (queries.sample_queries_strided if query_mode == 'strided'
             else queries.sample_queries_first)
  sampled = sampler(example['occluded'], example['target_points'])
  return {key: value[0] for key, value in sampled.items()}


# --- one video --------------------------------------------------------------------------------

def model_hash(config: ml_collections.ConfigDict) -> str:
  """Hash of the config without the sections that only affect tracking (TRACK_ONLY_SECTIONS)."""
  return config_hash(ml_collections.ConfigDict(
      {k: v for k, v in config.to_dict().items() if k not in TRACK_ONLY_SECTIONS}))


def is_up_to_date(result: dict | None, key: dict, trackers: Sequence[str]) -> bool:
  """Whether a result.json matches this run (hash, dataset, resolution, mode) and its trackers."""
  if not result or any(result.get(k) != v for k, v in key.items()):
    return False
  if result.get('num_queries') == 0:
    return True  # Nothing to score, whatever the trackers.
  return all(t in result.get('metrics', {}) for t in trackers)


def evaluate_video(example: dict, video_dir: Path, config: ml_collections.ConfigDict, *,
                   query_mode: str, trackers: Sequence[str], key: dict, position: int,
                   previous: dict | None = None, done_s: dict | None = None) -> dict:
  """Runs the whole pipeline on one example and writes video_dir/result.json.

  Args:
    example: a `load_tapvid` example (video, target_points (x, y) px, occluded).
    video_dir: OUT/videos/<id>.
    config: the run's config.
    query_mode: 'strided' or 'first'.
    trackers: trackers to score ('omnimotion' trains the model first).
    key: dataset, resolution, query_mode and config_hash, stored for the resume check.
    position: the video's position in the split (recorded).
    previous: an earlier result.json of the same key; its other trackers' metrics are kept
      (e.g. `--baseline direct` after `--baseline chained` ends with both).
    done_s: seconds of the stages already run for this video elsewhere (a batch: 'preprocess',
      'train'); training is then not repeated, and these are the recorded wall times.

  Returns:
    The result.json content.
  """
  start = time.time()
  wall = {}
  sampled = sample_queries(example, query_mode)
  video = example['video']
  result = {**key, 'video_id': example['video_id'], 'position': position,
            'num_frames': int(video.shape[0]),
            'size': list(video.shape[1:3]), 'num_tracks': int(example['target_points'].shape[0]),
            'num_queries': int(sampled['query_points'].shape[0]), 'trackers': list(trackers)}
  if result['num_queries'] == 0:
    # TapNet's metrics are undefined without queries; record it, leave it out of the means.
    result.update(metrics={}, wall_s={'total': round(time.time() - start, 3)},
                  note='no visible track to query; excluded from the means')
    workdir_lib.write_json(video_dir / RESULT_FILE, result)
    return result

  workdir = run_directory(video_dir, config)
  done_s = done_s or {}
  if 'preprocess' not in done_s:
    t0 = time.time()
    pipeline.preprocess_stage(video, workdir, config)  # The frames themselves, no file trip.
    wall['preprocess'] = time.time() - t0
  if 'omnimotion' in trackers and 'train' not in done_s:
    t0 = time.time()
    pipeline.train_stage(config, workdir)
    wall['train'] = time.time() - t0
  wall.update(done_s)
  metrics = score.evaluate_workdir(
      config, workdir, query_points=sampled['query_points'],
      target_points=sampled['target_points'], occluded=sampled['occluded'],
      query_mode=query_mode, trackers=trackers, video=video)
  for name in trackers:
    # evaluate_workdir times each tracker (tracking + scoring); report it as a stage.
    wall[f'track_{name}'] = metrics[name].pop('wall_s')
  wall['total'] = time.time() - start
  wall = {k: round(v, 3) for k, v in wall.items()}
  if previous and all(previous.get(k) == v for k, v in key.items()):
    # Same config: the earlier trackers' scores stay valid; this run's values win.
    metrics = {**previous.get('metrics', {}), **metrics}
    wall = {**previous.get('wall_s', {}), **wall}
    result['trackers'] = list(metrics)
  result.update(metrics=metrics, wall_s=wall, workdir=str(workdir.relative_to(video_dir)))
  workdir_lib.write_json(video_dir / RESULT_FILE, result)
  return result


# --- entry point ------------------------------------------------------------------------------

def _video_job(dataset: str, data_dir: Path, manual_dir, resolution: str, index: int,
               video_dir: Path, config: ml_collections.ConfigDict, query_mode: str,
               trackers: Sequence[str], key: dict):
  """Loads one video by position and evaluates it (also a worker process's entry point).

  Returns (video_id, position, result.json content, seconds).
  """
  t0 = time.time()
  (example,) = builders.load_tapvid(dataset, data_dir, manual_dir, resolution, videos=[index])
  result = evaluate_video(example, video_dir, config, query_mode=query_mode, trackers=trackers,
                          key=key, position=index,
                          previous=workdir_lib.read_json(video_dir / RESULT_FILE))
  return example['video_id'], index, result, time.time() - t0


def run_directory(video_dir: Path, config: ml_collections.ConfigDict) -> Path:
  """The run folder of a video: a hash of the config without its tracking section."""
  return video_dir / f'{RUN_DIR_PREFIX}{model_hash(config)}'


def _batch_job(dataset: str, data_dir: Path, manual_dir, resolution: str, indices: list[int],
               video_dirs: list[Path], config: ml_collections.ConfigDict, query_mode: str,
               trackers: Sequence[str], key: dict) -> list:
  """Evaluates several videos, training them as one batch on all local devices (see
  loop.fit_many); everything else as `_video_job` does it. Returns its tuples, one per video."""
  t0 = time.time()
  examples = list(builders.load_tapvid(dataset, data_dir, manual_dir, resolution, videos=indices))
  done, trained = [{} for _ in examples], []
  for example, video_dir, stages in zip(examples, video_dirs, done):
    if 'omnimotion' in trackers and sample_queries(example, query_mode)['query_points'].size:
      start = time.time()
      trained.append(pipeline.preprocess_stage(example['video'],
                                               run_directory(video_dir, config), config).parent)
      stages['preprocess'] = time.time() - start
  if trained:
    start = time.time()
    pipeline.train_many_stage(config, trained)
    for stages in done:
      if stages:
        stages['train'] = time.time() - start
  load_s = (time.time() - t0) / len(examples)
  out = []
  for example, index, video_dir, stages in zip(examples, indices, video_dirs, done):
    start = time.time()
    result = evaluate_video(example, video_dir, config, query_mode=query_mode, trackers=trackers,
                            key=key, position=index, done_s=stages,
                            previous=workdir_lib.read_json(video_dir / RESULT_FILE))
    out.append((example['video_id'], index, result, time.time() - start + load_s))
  return out


def run_evaluation(dataset: str, query_mode: str, config: ml_collections.ConfigDict | str,
                   manual_dir: str | os.PathLike | None, out: str | os.PathLike, *,
                   data_dir: str | os.PathLike | None = None,
                   videos: str | Sequence[str | int] | None = None,
                   shard: str | tuple[int, int] | None = None,
                   baseline: str | None = None,
                   resolution: str = DEFAULT_RESOLUTION,
                   config_label: str | None = None,
                   workers: int = 1, batch_videos: int = 1) -> dict:
  """Evaluates (resumably, optionally one shard of) a TAP-Vid set; see the module docstring.

  Args:
    dataset: 'tapvid_davis', 'tapvid_rgb_stacking', 'tapvid_kinetics' or 'tapvid_synthetic'.
    query_mode: 'strided' (OmniMotion's protocol) or 'first'.
    config: a loaded config, or a config name/path.
    manual_dir: folder with the TAP-Vid files (unused for tapvid_synthetic and once the set is
      prepared in data_dir).
    out: results folder (OUT/videos/<id>/..., OUT/summary.md, OUT/summary.json).
    data_dir: TFDS data dir for the prepared set (default $TFDS_DATA_DIR, else
      ~/tensorflow_datasets).
    videos: 'a,b' or a list of video ids or positions in the split (default: all).
    shard: 'i/n' or (i, n): videos i, i+n, ... of the selection (default: this JAX process's).
    baseline: 'chained' or 'direct' to score only that flow baseline (no optimisation).
    resolution: builder config: '256x256' (default, the protocol); tapvid_synthetic also has
      'mini_256x256' (its 4-video suite); 'full' keeps the original size (not the protocol).
    config_label: how the summary names the config (default: its hash).
    workers: videos evaluated at a time, each in its own process pinned to its own share of the
      CPU cores (workers.py; 2 on a 2-core CPU: 1.36x the throughput). Results agree with a
      one-process run to within float summation order, and equal those of a run pinned the
      same way.
    batch_videos: videos optimised at a time as one batch (train/batch.py), their video axis
      sharded over all local devices (a multiple of the device count uses them all). Each video's
      result equals its one-at-a-time result to within float summation order.

  Returns:
    The summary dict (as summary.json) plus 'summary_path', 'evaluated' and 'skipped' (ids).
  """
  if query_mode not in QUERY_MODES:
    raise UserInputError(f'--query_mode {query_mode!r}: choose one of {", ".join(QUERY_MODES)}.')
  if baseline is not None and baseline not in BASELINES:
    raise UserInputError(f'--baseline {baseline!r}: choose one of {", ".join(BASELINES)} (or '
                         'leave it out to optimise OmniMotion and score all three trackers).')
  if dataset not in builders.BUILDERS:
    raise UserInputError(f'--dataset {dataset!r}: choose one of {", ".join(builders.BUILDERS)}.')
  configs = [c.name for c in builders.BUILDERS[dataset].BUILDER_CONFIGS]
  if resolution not in configs:
    raise UserInputError(f'--resolution {resolution!r}: {dataset} has {", ".join(configs)}; use '
                         f'{DEFAULT_RESOLUTION} for the TAP-Vid protocol.')
  shard = parse_shard(shard)
  workers_lib.core_sets(workers)  # Validates the count before any work.
  if batch_videos < 1 or (batch_videos > 1 and workers > 1):
    raise UserInputError(f'--batch_videos {batch_videos} (with --workers {workers}): pass a '
                         'batch size >= 1, and use either --batch_videos or --workers, not both.')
  wanted = parse_videos(videos)
  if isinstance(config, str):
    config_label = config_label or config
    config = load_config(config)
  chash = config_hash(config)
  config_label = config_label or chash
  trackers = TRACKERS if baseline is None else (baseline,)
  out = Path(out)
  data_dir = Path(os.environ.get('TFDS_DATA_DIR', DEFAULT_DATA_DIR) if data_dir is None
                  else data_dir)

  # With several processes, prepare the set once beforehand (see the README): TFDS preparation
  # is not safe to run concurrently into one data_dir.
  all_ids = list_videos(dataset, data_dir, manual_dir, resolution)
  folders = folder_names(all_ids)
  selected = select_videos(all_ids, wanted, dataset)
  if shard is None:  # One shard per process of a multi-host job.
    import jax  # Lazily: initialises the backend.
    shard = jax.process_index(), jax.process_count()
  mine = selected[shard[0]::shard[1]]
  key = {'dataset': dataset, 'resolution': resolution, 'query_mode': query_mode,
         'config_hash': chash}
  logger.info('eval %s/%s (%s), config %s [%s], trackers %s: %d of %d selected videos in shard '
              '%d/%d', dataset, resolution, query_mode, config_label, chash, ','.join(trackers),
              len(mine), len(selected), *shard)

  skipped, todo = [], []
  for index in mine:
    video_dir = out / VIDEOS_DIR / folders[index]
    if is_up_to_date(workdir_lib.read_json(video_dir / RESULT_FILE), key, trackers):
      skipped.append(all_ids[index])
      logger.info('  %s: skipped (%s up to date)', all_ids[index], RESULT_FILE)
    else:
      todo.append(index)
  jobs = [(dataset, data_dir, manual_dir, resolution, index, out / VIDEOS_DIR / folders[index],
           config, query_mode, trackers, key) for index in todo]
  evaluated = []

  def report(job_result):
    video_id, index, result, seconds = job_result
    evaluated.append(video_id)
    scores = ' '.join(
        f'{name} AJ {summary_lib.format_value(result["metrics"][name]["average_jaccard"], True)}'
        for name in trackers if name in result['metrics'])
    logger.info('  [%d/%d] %s (position %d): %s (%.0f s)', len(evaluated), len(todo), video_id,
                index, scores or result.get('note'), seconds)

  if batch_videos > 1:
    for start in range(0, len(todo), batch_videos):
      group = todo[start:start + batch_videos]
      for job_result in _batch_job(dataset, data_dir, manual_dir, resolution, group,
                                   [out / VIDEOS_DIR / folders[i] for i in group], config,
                                   query_mode, trackers, key):
        report(job_result)
  elif workers == 1:
    for job in jobs:
      report(_video_job(*job))
  else:
    workers_lib.run_pinned(_video_job, jobs, workers, on_result=report)

  summary = summary_lib.write_summary(out, key, [folders[i] for i in selected], config_label,
                                      str(config.data.flow_backend))
  logger.info('summary: %s (%d videos; %s)', out / SUMMARY_MD, summary['num_included'],
              'all done' if summary['progress']['all_done'] else 'not all done')
  return {**summary, 'summary_path': str(out / SUMMARY_MD), 'evaluated': evaluated,
          'skipped': skipped}
