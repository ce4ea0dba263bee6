"""Tests of store.py, pairs.py and preprocess.py: round trip, pair plans, resumable preprocessing."""

import json
import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from omnimotion_jax.data import flow as flow_lib
from omnimotion_jax.data import pairs as pairs_lib
from omnimotion_jax.data import preprocess as preprocess_lib
from omnimotion_jax.data import store as store_lib
from omnimotion_jax.data import video as video_lib
from omnimotion_jax import pipeline
from omnimotion_jax import workdir as workdir_lib
from omnimotion_jax.config import load_config
from omnimotion_jax.errors import UserInputError

STORE_LIMIT_BYTES = 10**9  # 250 frames at 256x256 with the default plan must fit in 1 GB.


# --- store round trip ---------------------------------------------------------------------------

def _random_store_arrays(num_frames=3, height=5, width=7, seed=0):
  # H * W = 35 is not a multiple of 8: exercises the packbits padding.
  rng = np.random.default_rng(seed)
  plan = pairs_lib.make_plan('exhaustive', num_frames)
  num_pairs = len(plan.pairs)
  cycle = rng.random((num_pairs, height, width)) < 0.5
  return dict(
      frames=rng.integers(0, 256, (num_frames, height, width, 3), dtype=np.uint8),
      frame_indices=np.arange(num_frames, dtype=np.int32) * 2,
      pairs=plan.pairs,
      flows=rng.normal(scale=20, size=(num_pairs, height, width, 2)).astype(np.float32),
      cycle=cycle,
      occluded=(rng.random((num_pairs, height, width)) < 0.5) & ~cycle,
      counts=rng.integers(0, 5, (num_frames, height, width)).astype(np.uint16),
      pair_counts=rng.integers(0, 35, num_pairs).astype(np.int32),
      meta={'source': 'x.mp4', 'config_hash': 'abc'})


def test_store_roundtrip_bit_exact(tmp_path):
  arrays = _random_store_arrays()
  path = store_lib.write_store(tmp_path / 'seq.npz', **arrays)
  assert [p.name for p in tmp_path.iterdir()] == ['seq.npz']  # no temp file left
  seq = store_lib.load_store(path)
  np.testing.assert_array_equal(seq.frames, arrays['frames'])
  np.testing.assert_array_equal(seq.pairs, arrays['pairs'])
  assert seq.flows.dtype == np.float16
  np.testing.assert_array_equal(seq.flows, arrays['flows'].astype(np.float16))
  assert seq.cycle.dtype == bool and seq.occluded.dtype == bool
  np.testing.assert_array_equal(seq.cycle, arrays['cycle'])
  np.testing.assert_array_equal(seq.occluded, arrays['occluded'])
  np.testing.assert_array_equal(seq.counts, arrays['counts'])
  np.testing.assert_array_equal(seq.pair_counts, arrays['pair_counts'])
  np.testing.assert_array_equal(seq.frame_indices, arrays['frame_indices'])
  assert seq.meta['source'] == 'x.mp4' and seq.meta['format_version'] == store_lib.FORMAT_VERSION
  for k, (i, j) in enumerate(seq.pairs):
    assert seq.pair_index[i, j] == k
  assert (np.diag(seq.pair_index) == -1).all()


def test_to_device_is_a_pytree_usable_under_jit(tmp_path):
  seq = store_lib.load_store(store_lib.write_store(tmp_path / 's.npz', **_random_store_arrays()))
  dev = store_lib.to_device(seq)
  assert isinstance(dev.flows, jax.Array) and dev.flows.shape == seq.flows.shape
  assert dev.cycle.dtype == jnp.bool_ and dev.meta == seq.meta

  @jax.jit
  def valid_flow_sum(data, k):
    valid = data.cycle[k] | data.occluded[k]
    return jnp.sum(jnp.where(valid[..., None], data.flows[k].astype(jnp.float32), 0.0))

  k = 2
  expected = np.where((seq.cycle[k] | seq.occluded[k])[..., None], seq.flows[k].astype(np.float32),
                      0).sum()
  np.testing.assert_allclose(valid_flow_sum(dev, k), expected, rtol=1e-5)


def test_load_store_errors(tmp_path):
  with pytest.raises(UserInputError, match='no preprocessed store here'):
    store_lib.load_store(tmp_path / 'missing.npz')
  np.savez(tmp_path / 'other.npz', a=np.zeros(3))
  with pytest.raises(UserInputError, match='not an omnimotion_jax store'):
    store_lib.load_store(tmp_path / 'other.npz')
  (tmp_path / 'junk.npz').write_text('junk')
  with pytest.raises(UserInputError, match='unreadable store'):
    store_lib.load_store(tmp_path / 'junk.npz')


# --- pair plans -----------------------------------------------------------------------------------

def test_exhaustive_plan():
  plan = pairs_lib.make_plan('exhaustive', 6)
  assert len(plan.pairs) == 30 and len(plan.direct) == 30
  assert (plan.pairs[:, 0] != plan.pairs[:, 1]).all()


def test_banded_plan_structure():
  plan = pairs_lib.make_plan('banded', 40, dense_gap=4, long_stride=8)
  pairs = {tuple(p) for p in plan.pairs.tolist()}
  gaps = set(plan.gaps.tolist())
  assert gaps == {1, 2, 3, 4, 8, 16, 32}
  for i in range(39):  # every adjacent pair, both ways
    assert (i, i + 1) in pairs and (i + 1, i) in pairs
  assert (0, 8) in pairs and (8, 0) not in pairs  # long gaps forward only ...
  direct = {tuple(p) for p in plan.direct.tolist()}
  assert (8, 0) in direct  # ... but both directions get a direct flow for the cycle check
  assert pairs_lib.make_plan('banded', 40, max_gap=10).gaps.max() == 8


def test_banded_long_gaps_grow_geometrically():
  dense, long = pairs_lib.banded_gaps(40, dense_gap=4, long_stride=6, growth=1.5)
  assert dense == [1, 2, 3, 4]
  assert long == [6, 9, 14, 20, 30]  # round(6 * 1.5^k) up to N - 1 = 39
  assert pairs_lib.banded_gaps(40, 4, 8)[1] == [8, 16, 32]  # the default growth doubles
  with pytest.raises(UserInputError, match='long_gap_growth'):
    pairs_lib.make_plan('banded', 40, long_gap_growth=1.0)


def test_default_plan_meets_the_store_budget():
  config = load_config('default')
  cfg = config.data
  plan = pairs_lib.make_plan(cfg.pair_plan, 250, cfg.dense_gap, cfg.long_stride)
  assert pairs_lib.store_bytes(len(plan.pairs), 250, 256, 256) <= STORE_LIMIT_BYTES
  assert plan.gaps.max() >= 70  # training samples gaps up to ~70
  exhaustive = pairs_lib.make_plan('exhaustive', 250)
  assert pairs_lib.store_bytes(len(exhaustive.pairs), 250, 256, 256) > 10 * STORE_LIMIT_BYTES


def test_plan_errors():
  with pytest.raises(UserInputError, match='data.pair_plan=.dense.: unknown pair plan'):
    pairs_lib.make_plan('dense', 10)
  with pytest.raises(UserInputError, match='data.dense_gap=0'):
    pairs_lib.make_plan('banded', 10, dense_gap=0)


# --- preprocess ----------------------------------------------------------------------------------

NUM_FRAMES, HEIGHT, WIDTH = 10, 48, 64


@pytest.fixture(scope='module')
def frame_folder(tmp_path_factory):
  """A photo seen through a crop window moving (1, 0.5) px per frame, as PNG frames."""
  folder = tmp_path_factory.mktemp('video') / 'frames'
  folder.mkdir()
  image = skdata.astronaut()
  for t in range(NUM_FRAMES):
    y0, x0 = 150 + t // 2, 200 + t
    Image.fromarray(image[y0:y0 + HEIGHT, x0:x0 + WIDTH]).save(folder / f'{t:05d}.png')
  return folder


class _FlowCounter:
  """Wraps ComputedBackend.flow to count calls and optionally fail after a number of them."""

  def __init__(self, monkeypatch, fail_after=None):
    self.calls = 0
    original = flow_lib.ComputedBackend.flow
    counter = self

    def flow(backend, i, j):
      if fail_after is not None and counter.calls >= fail_after:
        raise RuntimeError('simulated interruption')
      counter.calls += 1
      return original(backend, i, j)

    monkeypatch.setattr(flow_lib.ComputedBackend, 'flow', flow)


def test_preprocess_writes_a_store(tmp_path, frame_folder):
  config = load_config('default')
  cfg = config.data
  path = pipeline.preprocess_stage(frame_folder, tmp_path / 'w', config)
  seq = store_lib.load_store(path)
  plan = pairs_lib.make_plan('banded', NUM_FRAMES, cfg.dense_gap, cfg.long_stride)
  np.testing.assert_array_equal(seq.pairs, plan.pairs)
  assert seq.frames.shape == (NUM_FRAMES, HEIGHT, WIDTH, 3)
  # The crop moves right by 1 px per frame, so the content moves by -1 px in x per frame.
  k = seq.pair_index[0, 2]
  interior = seq.cycle[k, 8:-8, 8:-8]
  assert interior.mean() > 0.9
  dx = seq.flows[k, 8:-8, 8:-8, 0].astype(np.float32)[interior]
  assert abs(np.median(dx) + 2.0) < 0.5
  assert (seq.counts <= len(plan.pairs)).all() and seq.counts.max() > 0
  report = json.loads((tmp_path / 'w' / workdir_lib.PREPROCESS).read_text())
  assert report['plan']['stored_pairs'] == len(plan.pairs)
  assert report['bytes']['store'] == path.stat().st_size
  assert set(report['timings_s']) >= {'load', 'flow', 'filter', 'chain', 'write', 'total'}
  assert not (tmp_path / 'w' / workdir_lib.FLOW_CACHE).exists()  # cache removed on success


def test_preprocess_resumes_and_skips_finished_work(tmp_path, frame_folder, monkeypatch, caplog):
  monkeypatch.setattr(preprocess_lib, 'CACHE_CHUNK', 8)
  config = load_config('default')
  cfg = config.data
  num_direct = len(pairs_lib.make_plan('banded', NUM_FRAMES, cfg.dense_gap, cfg.long_stride).direct)
  workdir = tmp_path / 'w'
  with monkeypatch.context() as patch:
    _FlowCounter(patch, fail_after=20)
    with pytest.raises(RuntimeError, match='simulated interruption'):
      pipeline.preprocess_stage(frame_folder, workdir, config)
  assert not (workdir / workdir_lib.STORE).exists()
  assert len(list((workdir / workdir_lib.FLOW_CACHE).glob('flows_*.npz'))) == 2  # 16 flows

  with monkeypatch.context() as patch:
    counter = _FlowCounter(patch)
    path = pipeline.preprocess_stage(frame_folder, workdir, config)
  assert counter.calls == num_direct - 16
  report = json.loads((workdir / workdir_lib.PREPROCESS).read_text())
  assert report['flows_from_cache'] == 16

  # The resumed result is bit-identical to an uninterrupted run.
  fresh = store_lib.load_store(pipeline.preprocess_stage(frame_folder, tmp_path / 'fresh', config))
  resumed = store_lib.load_store(path)
  for name in ('flows', 'cycle', 'occluded', 'counts', 'pair_counts'):
    np.testing.assert_array_equal(getattr(resumed, name), getattr(fresh, name))

  # A finished run is a no-op that says so.
  caplog.clear()
  with monkeypatch.context() as patch, caplog.at_level(logging.INFO, logger='omnimotion_jax'):
    counter = _FlowCounter(patch)
    pipeline.preprocess_stage(frame_folder, workdir, config)
  assert counter.calls == 0
  assert 'already preprocessed' in caplog.text
  # A config change is not.
  cfg.cycle_threshold = 2.0
  with monkeypatch.context() as patch:
    counter = _FlowCounter(patch)
    pipeline.preprocess_stage(frame_folder, workdir, config)
  assert counter.calls == num_direct


def test_preprocess_errors(tmp_path, frame_folder):
  config = load_config('default')
  cfg = config.data
  with pytest.raises(UserInputError, match='missing.mp4: no such file or folder'):
    pipeline.preprocess_stage(tmp_path / 'missing.mp4', tmp_path / 'w', config)
  cfg.flow_backend = 'flownet'
  with pytest.raises(UserInputError, match='data.flow_backend=.flownet.'):
    pipeline.preprocess_stage(frame_folder, tmp_path / 'w', config)
  cfg.flow_backend = 'raft'  # Known, but needs converted weights: said before any work.
  with pytest.raises(UserInputError, match='data.raft_weights is not set.*convert-weights'):
    pipeline.preprocess_stage(frame_folder, tmp_path / 'w', config)
  cfg.flow_backend = 'files'
  with pytest.raises(UserInputError, match='needs a flow folder'):
    pipeline.preprocess_stage(frame_folder, tmp_path / 'w', config)


def test_frames_in_memory_give_the_store_of_their_files(frame_folder, tmp_path):
  # The evaluation and the demo pass decoded frames straight to preprocess (no PNG round trip).
  config = load_config('cpu_tiny')
  cfg = config.data
  from_files = store_lib.load_store(pipeline.preprocess_stage(frame_folder, tmp_path / 'a', config))
  frames = np.stack([video_lib.read_image_rgb(p) for p in video_lib.list_frame_files(frame_folder)])
  from_array = store_lib.load_store(pipeline.preprocess_stage(frames, tmp_path / 'b', config))
  for name in ('frames', 'frame_indices', 'pairs', 'flows', 'cycle', 'occluded', 'counts'):
    np.testing.assert_array_equal(getattr(from_array, name), getattr(from_files, name))
  assert from_array.meta['input_size'] == from_files.meta['input_size']
  # The array stage alone (no run folder, no cache) computes the same arrays.
  arrays, facts = preprocess_lib.preprocess_frames(
      from_files.frames, from_files.frame_indices, cfg,
      input_size=tuple(from_files.meta['input_size']))
  for name in ('flows', 'cycle', 'occluded', 'counts', 'pair_counts'):
    np.testing.assert_array_equal(arrays[name], getattr(from_files, name))
  assert facts['flows_from_cache'] == 0

