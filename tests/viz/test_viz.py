"""Tests of viz/ (drawing, videos, figures, report): marker placement, trail stabilisation, depth colours, the videos
of a workdir, and the static report page (links, partial workdirs, no internet)."""

import html.parser
import json
from pathlib import Path

import mediapy
import numpy as np
import pytest
from PIL import Image

from omnimotion_jax.data import synthetic
from omnimotion_jax.data import video as video_lib
from omnimotion_jax.viz import drawing as viz
from omnimotion_jax.viz import figures
from omnimotion_jax.viz import report
from omnimotion_jax.viz import videos
from omnimotion_jax.errors import UserInputError

NUM_FRAMES, SIZE = 8, 64
RED = (255, 0, 0)
MARKER_RADIUS = 3  # px: large enough that the rounded centre pixel is fully covered.
CROSS_RADIUS = 4
SNAPSHOT_STEPS = (100, 200, 300)


@pytest.fixture(scope='module')
def sample():
  return synthetic.make_video(0, NUM_FRAMES, SIZE, SIZE)


def _black(num_frames=2, height=SIZE, width=SIZE):
  return np.zeros((num_frames, height, width, 3), np.uint8)


def _one_point(x, y, num_frames=2, occluded=False):
  tracks = np.tile(np.array([[[x, y]]], np.float32), (1, num_frames, 1))
  occ = np.full((1, num_frames), occluded)
  queries = np.array([[0, y, x]], np.float32)
  return tracks, occ, queries


def _make_workdir(path: Path, sample, *, masks=True) -> Path:
  """A complete fake run: GT tracks as predictions, fake depth / logs / eval / snapshots."""
  path.mkdir(parents=True, exist_ok=True)
  frames = sample['video']
  # viz reads only these two members of sequence.npz.
  np.savez(path / 'sequence.npz', frames=frames, frame_indices=np.arange(NUM_FRAMES))
  group = sample['trackgroup_strided']
  tracks, occluded = sample['target_points'][group], sample['occluded'][group]
  np.savez(path / 'tracks.npz', tracks=tracks, occluded=occluded,
           query_points=sample['query_points_strided'])
  np.savez(path / 'gt.npz', target_points=tracks, occluded=occluded)
  y, x = np.mgrid[0:SIZE, 0:SIZE]
  depth = np.stack([0.5 + x / SIZE + 0.1 * t for t in range(NUM_FRAMES)]).astype(np.float32)
  np.save(path / 'depth.npy', depth)
  (path / 'snapshots').mkdir()
  for step in SNAPSHOT_STEPS:
    np.save(path / 'snapshots' / f'depth_{step:06d}.npy', depth[:3] * step / 100)
  with open(path / 'metrics.jsonl', 'w') as f:
    for step in range(0, 100, 10):
      record = {'step': step, 'wall_s': step * 0.1, 'loss': 1.0 / (step + 1), 'lr': 1e-3}
      for term in ('flow', 'rgb', 'rgb_grad', 'flow_grad', 'depth_range', 'distortion', 'smooth'):
        record[f'loss/{term}'] = 0.5 / (step + 1)
      f.write(json.dumps(record) + '\n')
    f.write('{"step": 100, "lo')  # A half-written last line (run still going) is skipped.
  (path / 'config.json').write_text(json.dumps({'train': {'num_steps': 100}, 'model': {'k': 32}}))
  (path / 'train.json').write_text(json.dumps({'steps_done': 100, 'wall_s': 10.0,
                                               'steps_per_s': 10.0, 'num_skipped': 0,
                                               'finished': True}))
  (path / 'preprocess.json').write_text(json.dumps({'flow_s': 1.5, 'num_pairs': 12}))
  (path / 'timings.json').write_text(json.dumps({'preprocess': 2.0, 'train': 10.0, 'track': 1.0}))
  (path / 'eval.json').write_text(json.dumps({
      'omnimotion': {'average_jaccard': 0.5, 'average_pts_within_thresh': 0.6,
                     'occlusion_accuracy': 0.9, 'temporal_coherence': 0.8},
      'chained': {'average_jaccard': [0.2, 0.4], 'occlusion_accuracy': 0.7}}))
  if masks:
    (path / 'masks').mkdir()
    for t, mask in enumerate(sample['masks']):
      Image.fromarray(mask.astype(np.uint8) * 255).save(path / 'masks' / f'{t:05d}.png')
  return path


class _Links(html.parser.HTMLParser):
  """Collects every src / href / poster attribute."""

  def __init__(self):
    super().__init__()
    self.links = []

  def handle_starttag(self, tag, attrs):
    self.links += [value for name, value in attrs if name in ('src', 'href', 'poster')]


def _check_page(index: Path) -> str:
  text = index.read_text()
  assert 'http://' not in text and 'https://' not in text
  parser = _Links()
  parser.feed(text)
  for link in parser.links:
    assert not link.startswith(('/', 'file:')), link  # relative only
    assert (index.parent / link).exists(), link
  return text


# --- drawing ------------------------------------------------------------------------------------

def test_dot_lands_on_tracked_pixel():
  tracks, occ, queries = _one_point(20, 30)
  out = viz.draw_tracks(_black(), tracks, occ, queries, radius=MARKER_RADIUS, colors=[RED])
  assert tuple(out[0, 30, 20]) == RED and tuple(out[1, 30, 20]) == RED
  assert tuple(out[0, 5, 50]) == (0, 0, 0)  # far away: untouched
  assert tuple(out[0, 30, 20 + MARKER_RADIUS + 2]) == (0, 0, 0)


def test_subpixel_dot_is_centred_on_the_track():
  x, y = 10.4, 40.6
  tracks, occ, queries = _one_point(x, y)
  out = viz.draw_tracks(_black(), tracks, occ, queries, radius=MARKER_RADIUS, colors=[RED])
  assert tuple(out[0, round(y), round(x)]) == RED
  weight = out[0, ..., 0].astype(np.float64)
  rows, cols = np.mgrid[0:SIZE, 0:SIZE]
  centroid = (np.sum(weight * cols) / weight.sum(), np.sum(weight * rows) / weight.sum())
  # Sub-pixel drawing (cv2 shift): the marker's centre of mass is the track, not round(track).
  assert np.allclose(centroid, (x, y), atol=0.1)


def test_occluded_point_is_a_cross_or_hidden():
  tracks, occ, queries = _one_point(32, 32, occluded=True)
  out = viz.draw_tracks(_black(), tracks, occ, queries, radius=CROSS_RADIUS, colors=[RED])
  assert out[0, 32, 32, 0] >= 128  # the centre of the 'x'
  assert out[0, 34, 34, 0] >= 128 and out[0, 30, 34, 0] >= 128  # both diagonals
  assert out[0, 32, 35, 0] == 0  # off the diagonals: a cross, not a dot
  hidden = viz.draw_tracks(_black(), tracks, occ, queries, radius=CROSS_RADIUS, colors=[RED],
                           hide_occluded=True)
  assert not hidden.any()


def test_position_colors_are_smooth_in_the_query_position():
  queries = np.array([[0, 10, 10], [0, 11, 10], [0, 50, 50], [0, 10, 50]], np.float32)
  colors = viz.position_colors(queries, SIZE, SIZE).astype(int)
  assert np.abs(colors[0] - colors[1]).max() < 20  # neighbours: similar
  assert np.abs(colors[0] - colors[2]).max() > 100  # opposite corners: different
  assert np.abs(colors[0] - colors[3]).max() > 100


def test_background_motion_and_stabilised_trails():
  rng = np.random.default_rng(0)
  num_frames, shift, fg_velocity = 6, np.array([2.0, -1.0]), np.array([1.0, 0.5])
  t = np.arange(num_frames)[:, None]
  bg = rng.uniform(5, 55, (20, 1, 2)) + shift * t  # camera pans by `shift` px per frame
  bg[0] += 30.0 * t  # one outlier: the median ignores it
  fg = np.array([[[30.0, 30.0]]]) + (shift + fg_velocity) * t
  tracks = np.concatenate([bg, fg])
  occluded = np.zeros(tracks.shape[:2], bool)
  background = np.arange(len(tracks)) < len(bg)
  motion = viz.background_motion(tracks, occluded, background, reference_frame=2)
  assert np.allclose(motion, shift * (t - 2))
  stable = viz.stabilized_tracks(tracks, occluded, background, reference_frame=2)
  # In frame 2's view only the object's own motion is left.
  assert np.allclose(stable[-1], fg[0, 2] + fg_velocity * (t - 2))

  # Rendered: a point that moves exactly with the camera leaves no tail once stabilised.
  tracks[-1] = np.array([30.0, 30.0]) + shift * t
  frames = _black(num_frames)
  foreground = ~background
  last = num_frames - 1
  old = np.round(tracks[-1, last - 2]).astype(int)  # where the raw tail passes, 2 frames back
  plain = viz.draw_trails(frames, tracks[foreground], occluded[foreground], radius=2)
  stabilised = viz.draw_trails(frames, tracks, occluded, foreground=foreground, radius=2)
  assert plain[last, old[1], old[0]].max() > 0
  assert stabilised[last, old[1], old[0]].max() == 0
  head = np.round(tracks[-1, last]).astype(int)
  assert stabilised[last, head[1], head[0]].max() > 0  # the head stays on the point
  assert stabilised[last].sum() < plain[last].sum()


def test_trail_opacity_matches_reference_formula():
  for age, window in ((0, 5), (3, 5), (10, 11)):
    expected = max(1 - 0.9 * age / (window * 0.99), 0.1)
    assert viz.trail_opacity(age, window) == pytest.approx(expected)


def test_mask_split_and_loaders(tmp_path):
  mask = np.zeros((SIZE, SIZE), bool)
  mask[16:48, 16:48] = True
  queries = np.array([[0, 32, 32], [0, 17, 32], [0, 5, 5]], np.float32)
  fg, bg = videos.split_by_mask(mask, queries)
  assert fg.tolist() == [True, False, False]  # (17, 32) is within the erosion of the edge
  assert bg.tolist() == [False, False, True]
  assert videos.foreground_from_mask(mask, queries).tolist() == fg.tolist()

  rgba = np.zeros((SIZE, SIZE, 4), np.uint8)
  rgba[..., 3] = mask * 255
  Image.fromarray(rgba, 'RGBA').save(tmp_path / 'mask.png')
  assert np.array_equal(videos.load_rgba_mask(tmp_path / 'mask.png'), mask)
  (tmp_path / 'masks').mkdir()
  for t in range(2):
    Image.fromarray((mask if t else ~mask).astype(np.uint8) * 255).save(
        tmp_path / 'masks' / f'{t:03d}.png')
  assert np.array_equal(videos.load_mask_folder(tmp_path / 'masks', 1), mask)
  assert np.array_equal(videos.load_mask_folder(tmp_path / 'masks', 0), ~mask)


def test_colorize_depth_uses_one_range_for_the_video():
  ramp = np.linspace(1, 2, 16).reshape(4, 4)
  depth = np.stack([np.full((4, 4), 1.0), np.full((4, 4), 2.0), ramp])
  colors = viz.colorize_depth(depth)
  assert colors.shape == (3, 4, 4, 3) and colors.dtype == np.uint8
  # Per-frame normalisation would give constant frames the same colour.
  assert not np.array_equal(colors[0, 0, 0], colors[1, 0, 0])
  # The same depth in different frames gets the same colour.
  assert np.array_equal(colors[0, 0, 0], colors[2, 0, 0])
  assert np.array_equal(colors[1, 0, 0], colors[2, 3, 3])
  near, far = colors[0, 0, 0].astype(int), colors[1, 0, 0].astype(int)
  assert near[0] > near[2] and far[2] > far[0]  # near = red end, far = blue end
  # An explicit range: values beyond it clip to the end colours.
  clipped = viz.colorize_depth(np.array([[[5.0, 1.0, -3.0, 0.0]]]), vmin=0.0, vmax=1.0)
  assert np.array_equal(clipped[0, 0, 0], clipped[0, 0, 1])
  assert np.array_equal(clipped[0, 0, 2], clipped[0, 0, 3])
  nan_depth = depth.copy()
  nan_depth[0, 0, 0] = np.nan
  assert not viz.colorize_depth(nan_depth)[0, 0, 0].any()


def test_side_by_side_layout():
  a, b = _black(3, 10, 6), np.full((3, 10, 4, 3), 7, np.uint8)
  out = viz.side_by_side(a, b)
  assert out.shape == (3, 10, 6 + viz.SEPARATOR_PX + 4, 3)
  assert (out[:, :, 6:6 + viz.SEPARATOR_PX] == viz.SEPARATOR_VALUE).all()
  assert (out[:, :, -4:] == 7).all()
  with pytest.raises(ValueError):
    viz.side_by_side(a, _black(2, 10, 6))


def test_gt_comparison_colours_the_error():
  gt, gt_occ, queries = _one_point(20, 20)
  good = viz.draw_gt_comparison(_black(), gt, gt_occ, gt, gt_occ, queries, radius=MARKER_RADIUS)
  pixel = good[0, 20, 20].astype(int)
  assert pixel[1] > pixel[0]  # zero error: green
  far = gt + np.array([20.0, 0.0], np.float32)
  bad = viz.draw_gt_comparison(_black(), far, gt_occ, gt, gt_occ, queries, radius=MARKER_RADIUS)
  pixel = bad[0, 20, 40].astype(int)
  assert pixel[0] > pixel[1]  # 20 px error: red
  assert bad[0, 20, 30].any()  # the line between GT and prediction
  missed = viz.draw_gt_comparison(_black(), gt, ~gt_occ, gt, gt_occ, queries,
                                  radius=CROSS_RADIUS)
  assert tuple(missed[0, 20, 20]) != (0, 0, 0)
  assert missed[0, 20, 20, 0] > 0 and missed[0, 20, 20, 2] > 0  # magenta cross


def test_write_video_pads_odd_sizes(tmp_path):
  frames = np.full((3, 11, 15, 3), 100, np.uint8)
  path = videos.write_video(tmp_path / 'odd.mp4', frames, fps=5)
  decoded = video_lib.load_video(path)
  assert decoded.shape == (3, 12, 16, 3)


# --- workdir videos and report --------------------------------------------------------------------

def test_render_outputs_and_report(tmp_path, sample):
  workdir = _make_workdir(tmp_path / 'run', sample)
  outputs = videos.render_outputs(workdir, fps=5)
  assert set(outputs) == set(videos.VIDEO_NAMES)
  video_lib._use_bundled_ffmpeg()
  for name, path in outputs.items():
    assert path == workdir / 'report' / f'{name}.mp4'
    decoded = mediapy.read_video(path)
    width = 3 * SIZE + 2 * viz.SEPARATOR_PX if name == 'side_by_side' else SIZE
    assert decoded.shape == (NUM_FRAMES, SIZE, width, 3), name
    assert (workdir / 'report' / f'{name}.png').exists()

  index = report.write_report(workdir)
  assert index == workdir / 'report' / 'index.html'
  text = _check_page(index)
  for name in videos.VIDEO_NAMES:
    assert f'src="{name}.mp4"' in text
  for step in SNAPSHOT_STEPS:
    assert (workdir / 'report' / f'depth_step_{step:06d}.png').exists()
  assert (workdir / 'report' / figures.LOSS_PNG).exists()
  assert '<details>' in text and 'num_steps' in text
  # Metrics table: fractions x100, per-video lists averaged, missing values as a dash.
  assert '50.00' in text and '60.00' in text and '90.00' in text and '0.80' in text
  assert '30.00' in text and 'chained' in text
  assert 'Missing' not in text


def test_report_of_partial_workdir(tmp_path):
  workdir = tmp_path / 'partial'
  workdir.mkdir()
  (workdir / 'config.json').write_text(json.dumps({'train': {'num_steps': 5}}))
  index = report.viz_command(workdir)
  text = _check_page(index)
  assert 'Missing' in text
  for needed in ('omnimotion-jax preprocess', 'omnimotion-jax train', 'omnimotion-jax track',
                 'sequence.npz', 'tracks.npz', 'metrics.jsonl'):
    assert needed in text
  assert '<video' not in text
  assert not list((workdir / 'report').glob('*.mp4'))


def test_workdir_without_depth_uses_rgba_mask(tmp_path, sample):
  workdir = _make_workdir(tmp_path / 'rgba', sample, masks=False)
  (workdir / 'depth.npy').unlink()
  rgba = np.zeros((SIZE, SIZE, 4), np.uint8)
  rgba[..., 3] = sample['masks'][0] * 255
  Image.fromarray(rgba, 'RGBA').save(workdir / 'mask.png')
  outputs = videos.render_outputs(workdir)
  assert set(outputs) == {'tracks', 'trails', 'side_by_side', 'gt_comparison'}
  video_lib._use_bundled_ffmpeg()
  decoded = mediapy.read_video(outputs['side_by_side'])  # input | tracks
  assert decoded.shape == (NUM_FRAMES, SIZE, 2 * SIZE + viz.SEPARATOR_PX, 3)
  text = _check_page(report.write_report(workdir))
  assert 'depth.npy' in text and 'Missing' in text


def test_depth_only_workdir_renders_depth(tmp_path):
  workdir = tmp_path / 'depth_only'
  workdir.mkdir()
  np.save(workdir / 'depth.npy', np.random.default_rng(0).random((4, 16, 20), np.float32))
  outputs = videos.render_outputs(workdir)
  assert set(outputs) == {'depth'}
  _check_page(report.write_report(workdir))


def test_viz_command_rejects_missing_workdir(tmp_path):
  with pytest.raises(UserInputError, match='no such workdir'):
    report.viz_command(tmp_path / 'nope')
