"""`omnimotion-jax demo`: the whole pipeline on a bundled synthetic video with ground truth.

The input is generated (no download): a procedural video with real photo textures, camera motion
and occluding objects (synthetic.py). The demo writes it as frames and an mp4, then runs
preprocess -> train -> track a grid -> pseudo-depth, scores OmniMotion against the chained- and
direct-flow baselines on the ground truth, and renders the videos and the HTML report.
"""

import time
from pathlib import Path

import ml_collections
import numpy as np

from omnimotion_jax.evaluation import score as evaluate
from omnimotion_jax import pipeline
from omnimotion_jax.data import synthetic
from omnimotion_jax.viz import drawing as viz
from omnimotion_jax.data import video as video_lib

# The bundled input: seed, frames, height, width, objects (crossing, leaving and re-entering).
DEMO_VIDEO = dict(seed=4242, num_frames=32, height=128, width=160, num_layers=3)
DEMO_FPS = 10
GRID_STEP = 8  # px between tracked grid points


def write_input(workdir: Path) -> tuple[Path, dict]:
  """Generates the demo video into workdir/input/ (PNG frames) and workdir/input.mp4."""
  import cv2  # pylint: disable=g-import-not-at-top
  sample = synthetic.make_video(**DEMO_VIDEO)
  frames_dir = workdir / 'input'
  frames_dir.mkdir(parents=True, exist_ok=True)
  for i, frame in enumerate(sample['video']):
    path = frames_dir / f'{i:05d}.png'
    if not path.exists():
      cv2.imwrite(str(path), frame[..., ::-1])
  video_lib.save_video(workdir / 'input.mp4', sample['video'], DEMO_FPS)
  return frames_dir, sample


def run_demo(workdir: str | Path, config: ml_collections.ConfigDict, progress: bool = True) -> dict:
  """Runs the demo; returns paths of its outputs and the metrics table."""
  workdir = Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  start = time.time()
  frames_dir, sample = write_input(workdir)
  outputs = pipeline.run(str(frames_dir), workdir, config, grid=GRID_STEP, progress=progress,
                         with_report=False)
  grid_tracks = outputs['tracks'].with_name('tracks_grid.npz')
  outputs['tracks'].replace(grid_tracks)
  group = sample['trackgroup_strided']
  results = evaluate.evaluate_workdir(
      config, workdir, query_points=sample['query_points_strided'],
      target_points=sample['target_points'][group], occluded=sample['occluded'][group],
      query_mode='strided', progress=progress)
  # The report shows the grid tracks; the GT comparison uses the evaluation queries.
  eval_tracks = workdir / pipeline.TRACKS_FILE
  eval_tracks.replace(workdir / viz.EVAL_TRACKS_FILE)
  grid_tracks.replace(workdir / pipeline.TRACKS_FILE)
  index = pipeline.report_stage(workdir)
  pipeline.record_timing(workdir, 'demo_total', time.time() - start)
  return {'report': index, 'input': workdir / 'input.mp4', 'table': evaluate.format_table(results),
          **outputs}
