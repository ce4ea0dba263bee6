"""`omnimotion-jax demo`: the whole pipeline on a bundled synthetic video with ground truth.

The input is generated (no download): a procedural video with real photo textures, camera motion
and occluding objects (synthetic.py), saved as workdir/input.mp4 for the report. The demo runs
preprocess (on the generated frames themselves) -> train -> track a grid -> pseudo-depth, scores
OmniMotion against the chained- and direct-flow baselines on the ground truth (their queries'
tracks go to tracks_eval.npz, the grid's stay in tracks.npz), and renders the videos and the HTML
report.
"""

import time
from pathlib import Path

import ml_collections

from omnimotion_jax import pipeline
from omnimotion_jax import workdir as workdir_lib
from omnimotion_jax.data import synthetic
from omnimotion_jax.data import video as video_lib
from omnimotion_jax.evaluation import score

# The bundled input: seed, frames, height, width, objects (crossing, leaving and re-entering).
DEMO_VIDEO = dict(seed=4242, num_frames=32, height=128, width=160, num_layers=3)
DEMO_FPS = 10
GRID_STEP = 8  # px between tracked grid points


def run_demo(workdir: str | Path, config: ml_collections.ConfigDict) -> dict:
  """Runs the demo; returns paths of its outputs and the metrics table."""
  workdir = Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  start = time.time()
  sample = synthetic.make_video(**DEMO_VIDEO)
  video_lib.save_video(workdir / workdir_lib.INPUT_VIDEO, sample['video'], DEMO_FPS)
  outputs = pipeline.run(sample['video'], workdir, config, grid=GRID_STEP, with_report=False)
  group = sample['trackgroup_strided']
  results = score.evaluate_workdir(
      config, workdir, query_points=sample['query_points_strided'],
      target_points=sample['target_points'][group], occluded=sample['occluded'][group],
      query_mode='strided', video=sample['video'])
  index = pipeline.report_stage(workdir)
  workdir_lib.record_timing(workdir, 'demo_total', time.time() - start)
  return {'report': index, 'input': workdir / workdir_lib.INPUT_VIDEO,
          'table': score.format_table(results), **outputs}
