"""Tests of filtering.py on flows with known, analytic cycle errors, occlusions and chains."""

import numpy as np
import pytest

from omnimotion_jax.data import filtering

H, W = 20, 40
CYCLE_TH = 3.0
OCC_CYCLE_TH = 4.5
OCC_RETURN_TH = 3.0
FILTER_KW = dict(cycle_threshold=CYCLE_TH, occlusion_cycle_threshold=OCC_CYCLE_TH,
                 occlusion_return_threshold=OCC_RETURN_TH, occlusion_max_gap=2)


def _const(dx, dy, height=H, width=W):
  flow = np.zeros((height, width, 2), np.float32)
  flow[..., 0], flow[..., 1] = dx, dy
  return flow


# --- sampling --------------------------------------------------------------------------------

def test_bilinear_sample_matches_manual_and_pads_with_zeros():
  rng = np.random.default_rng(0)
  image = rng.normal(size=(5, 6, 2)).astype(np.float32)
  # Integer positions are the pixels themselves.
  np.testing.assert_allclose(filtering.bilinear_sample(image, np.array([3.0]), np.array([2.0])),
                             image[2:3, 3], atol=0)
  # A point between 4 pixels.
  x, y = 1.25, 3.5
  manual = (0.75 * 0.5 * image[3, 1] + 0.25 * 0.5 * image[3, 2]
            + 0.75 * 0.5 * image[4, 1] + 0.25 * 0.5 * image[4, 2])
  np.testing.assert_allclose(filtering.bilinear_sample(image, np.array(x), np.array(y)), manual,
                             rtol=1e-6)
  # Half a pixel left of column 0: half of pixel (0, 0), half zero padding.
  np.testing.assert_allclose(filtering.bilinear_sample(image, np.array(-0.5), np.array(0.0)),
                             0.5 * image[0, 0], rtol=1e-6)
  # Far outside: exactly zero (and no index errors for huge values).
  far = filtering.bilinear_sample(image, np.array([-7.0, 1e9, 2.0]), np.array([1.0, 1.0, -3.0]))
  np.testing.assert_array_equal(far, 0)
  # A stack with a frame index per point.
  stack = np.stack([image, image + 10])
  np.testing.assert_allclose(
      filtering.bilinear_sample(stack, np.array([3.0, 3.0]), np.array([2.0, 2.0]),
                                frame=np.array([0, 1])), [image[2, 3], image[2, 3] + 10])


def test_sample_mask_all_needs_every_used_neighbour():
  mask = np.ones((4, 4), bool)
  mask[1, 2] = False
  x = np.array([1.0, 1.5, 1.0, 2.9, 3.0, 3.2])
  y = np.array([1.0, 1.0, 0.5, 2.0, 3.0, 0.0])
  # mask is indexed [row = y, column = x]. (1.5, 1) uses column 2 of row 1 (unset); (3.2, 0)
  # needs column 4, outside; (3, 3) is a corner pixel (only itself has weight).
  expected = [True, False, True, True, True, False]
  np.testing.assert_array_equal(filtering.sample_mask_all(mask, x, y), expected)


# --- forward-backward and occlusion -------------------------------------------------------------

def test_cycle_threshold_exact_pixels():
  # i -> j moves everything by (+2, +1); the backward flow carries a known error per column of
  # frame j, so exactly the pixels whose target column has error < 3 px pass.
  flow_ij = _const(2, 1)
  flow_ji = _const(-2, -1)
  flow_ji[:, 10, 0] += 2.9  # error 2.9 px -> pass
  flow_ji[:, 11, 0] += 3.1  # error 3.1 px -> fail
  flow_ji[:, 12, 1] -= 2.95  # error 2.95 px in y -> pass
  flow_ji[:, 13, :] += np.array([2.2, 2.2])  # error 3.11 px -> fail
  cycle, occluded = filtering.filter_pair(flow_ij, flow_ji, gap=3, **FILTER_KW)
  expected = np.ones((H, W), bool)
  expected[:, 11 - 2] = False
  expected[:, 13 - 2] = False
  # Targets outside frame j (the last row, the last 2 columns) sample f_ji = 0 (zero padding):
  # e_fb = |(2, 1)| = 2.24 < 3, so they pass, as in the reference.
  expected[H - 1] = True
  np.testing.assert_array_equal(cycle, expected)
  assert not occluded.any()  # gap 3 > occlusion_max_gap


def test_occluded_but_reliable_mask():
  # A foreground block (columns A..B-1 in frame i) moves right by V px over a static background.
  # Background pixels in columns B..B+V-1 are covered in frame j: their forward flow (0) is right,
  # the cycle fails (e_fb = V), and i->j->i->j lands back on the target (foreground flows).
  a, b, v = 10, 22, 6
  flow_ij = _const(0, 0)
  flow_ij[:, a:b, 0] = v
  flow_ji = _const(0, 0)
  flow_ji[:, a + v:b + v, 0] = -v
  cycle, occluded = filtering.filter_pair(flow_ij, flow_ji, gap=1, **FILTER_KW)
  expected_occluded = np.zeros((H, W), bool)
  expected_occluded[:, b:b + v] = True
  np.testing.assert_array_equal(occluded, expected_occluded)
  np.testing.assert_array_equal(cycle, ~expected_occluded)
  # Disoccluded background in j (columns a..a+v-1 of frame i) stays co-visible (static, cycle ok).
  assert cycle[:, a - 1].all()
  # Beyond occlusion_max_gap the G mask is off.
  _, occluded_far = filtering.filter_pair(flow_ij, flow_ji, gap=3, **FILTER_KW)
  assert not occluded_far.any()
  # G needs the target inside frame j: shift the scene so the covered columns leave the image.
  flow_out = flow_ij.copy()
  flow_out[:, b:b + v, 0] = W  # a "reliable" flow pointing out of the image
  _, occluded_out = filtering.filter_pair(flow_out, flow_ji, gap=1, **FILTER_KW)
  assert not occluded_out[:, b:b + v].any()


def test_feature_check_removes_dissimilar_targets_for_long_gaps():
  flow_ij, flow_ji = _const(2, 0), _const(-2, 0)
  feat_i = np.ones((5, 10, 4), np.float32)
  feat_j = np.ones((5, 10, 4), np.float32)
  feat_j[:, 5:] = -1  # right half of frame j looks different
  kw = dict(FILTER_KW, features_i=feat_i, features_j=feat_j, feature_similarity_threshold=0.5,
            feature_check_min_gap=3)
  cycle_far, _ = filtering.filter_pair(flow_ij, flow_ji, gap=3, **kw)
  cycle_near, _ = filtering.filter_pair(flow_ij, flow_ji, gap=2, **kw)
  assert cycle_near.all()
  # Feature columns 0..9 span image x 0..39 (align corners): feature x = x * 9 / 39.
  target_fx = (np.arange(W) + 2) * 9 / 39
  expected_cols = target_fx <= 4.0  # fully inside the similar half (x_f < 4 or exactly 4)
  assert cycle_far[:, expected_cols].all()
  assert not cycle_far[:, target_fx >= 5.0].any()


# --- chaining ------------------------------------------------------------------------------------

def _chain_inputs(t01=(1.5, 0.5), t12=(2.0, -1.0)):
  """3 frames, uniform colour, translations t01 and t12; pairs = adjacents + (0, 2) and (2, 0)."""
  pairs = np.array([[0, 1], [0, 2], [1, 0], [1, 2], [2, 0], [2, 1]], np.int32)
  flows = np.stack([_const(*t01), _const(0, 0), _const(-t01[0], -t01[1]), _const(*t12),
                    _const(0, 0), _const(-t12[0], -t12[1])]).astype(np.float16)
  cycle = np.ones((6, H, W), bool)
  cycle[[1, 4]] = False  # the direct long pairs are unreliable everywhere
  occluded = np.zeros_like(cycle)
  frames = np.full((3, H, W, 3), 128, np.uint8)
  return pairs, flows, cycle, occluded, frames


def test_chaining_two_translations_gives_their_sum_and_leaves_inputs_alone():
  pairs, flows, cycle, occluded, frames = _chain_inputs()
  before = [a.copy() for a in (pairs, flows, cycle, occluded, frames)]
  out_flows, out_cycle = filtering.chain_flows(pairs, flows, cycle, occluded, frames,
                                               rgb_threshold=0.3)
  for a, b in zip(before, (pairs, flows, cycle, occluded, frames)):
    np.testing.assert_array_equal(a, b)
  assert not np.shares_memory(out_flows, flows) and not np.shares_memory(out_cycle, cycle)
  # The chain goes p -> c1 = p + (1.5, 0.5) -> c2 = p + (3.5, -0.5). It stays valid where every
  # bilinear neighbour of c1 and c2 is inside: rows 1..H-3 (c2 needs y >= 0.5), x + 4.5 <= W - 1.
  interior = np.zeros((H, W), bool)
  interior[1:H - 2, :W - 5] = True
  np.testing.assert_allclose(out_flows[1][interior], np.broadcast_to([3.5, -0.5], (interior.sum(), 2)))
  assert out_cycle[1][interior].all()
  # c1's right neighbour leaves the image (R_12 not all set there); c2 is half outside in row 0
  # (RGB blends with the zero padding and fails the colour check).
  assert not out_cycle[1][:, W - 3:].any()
  assert not out_cycle[1][0].any()
  # Backward chain 2 -> 0: p -> p + (-2, 1) -> p + (-3.5, 0.5).
  interior_back = np.zeros((H, W), bool)
  interior_back[:H - 2, 4:] = True
  np.testing.assert_allclose(out_flows[4][interior_back], np.broadcast_to([-3.5, 0.5], (interior_back.sum(), 2)))
  assert out_cycle[4][interior_back].all()
  # Adjacent pairs are unchanged.
  for k in (0, 2, 3, 5):
    np.testing.assert_array_equal(out_flows[k], flows[k])
    np.testing.assert_array_equal(out_cycle[k], cycle[k])


def test_chaining_direct_flow_wins_where_reliable_and_rgb_check_applies():
  pairs, flows, cycle, occluded, frames = _chain_inputs()
  # Direct (0, 2) reliable in the top-left block with a different flow.
  flows = flows.copy()
  flows[1, :5, :5] = [4.0, 0.0]
  cycle = cycle.copy()
  cycle[1, :5, :5] = True
  # Frame 2 turns dark in columns >= 25: chained targets landing there fail the RGB check.
  frames = frames.copy()
  frames[2, :, 25:] = 0
  out_flows, out_cycle = filtering.chain_flows(pairs, flows, cycle, occluded, frames,
                                               rgb_threshold=0.3)
  np.testing.assert_allclose(out_flows[1][:5, :5], np.broadcast_to([4.0, 0.0], (5, 5, 2)))
  assert out_cycle[1][:5, :5].all()
  target_x = np.arange(W) + 3.5
  rows = slice(5, H - 2)
  assert out_cycle[1][rows][:, target_x < 24].all()
  assert not out_cycle[1][rows][:, target_x > 25].any()


def test_direct_flow_that_disagrees_with_a_valid_chain_is_not_trusted():
  pairs, flows, cycle, occluded, frames = _chain_inputs()
  flows, cycle = flows.copy(), cycle.copy()
  # Direct (0, 2) "reliable" everywhere; wrong by 4 px in the top-left block (the chain gives
  # (3.5, -0.5)), within 1 px of the chain elsewhere.
  flows[1] = [3.0, 0.0]
  flows[1, :5, :5] = [-0.5, -0.5]
  cycle[1] = True
  ref_flows, ref_cycle = filtering.chain_flows(pairs, flows, cycle, occluded, frames,
                                               rgb_threshold=0.3)
  out_flows, out_cycle = filtering.chain_flows(pairs, flows, cycle, occluded, frames,
                                               rgb_threshold=0.3, direct_agreement_px=2.0)
  block = np.s_[1:5, :5]  # Rows where the chain is valid (row 0 fails its RGB check).
  # Reference behaviour: the direct flow wins wherever it is reliable.
  np.testing.assert_allclose(ref_flows[1][block], np.broadcast_to([-0.5, -0.5], (4, 5, 2)))
  assert ref_cycle[1][block].all()
  # With the agreement check: the chain's flow there, still valid; the direct flow elsewhere.
  np.testing.assert_allclose(out_flows[1][block], np.broadcast_to([3.5, -0.5], (4, 5, 2)))
  assert out_cycle[1][block].all()
  np.testing.assert_allclose(out_flows[1][5:, 5:], ref_flows[1][5:, 5:])
  np.testing.assert_array_equal(out_cycle[1][5:, 5:], ref_cycle[1][5:, 5:])


def test_require_agreement_keeps_only_pixels_where_direct_and_chain_agree():
  pairs, flows, cycle, occluded, frames = _chain_inputs()
  flows, cycle = flows.copy(), cycle.copy()
  # Direct (0, 2): cycle-consistent except in columns >= 30, 4 px off the chain's (3.5, -0.5)
  # in the top-left block, 0.5 px off it elsewhere.
  flows[1] = [3.0, -0.5]
  flows[1, :5, :5] = [-0.5, -0.5]
  cycle[1] = True
  cycle[1, :, 30:] = False
  loose_flows, loose_cycle = filtering.chain_flows(pairs, flows, cycle, occluded, frames,
                                                   rgb_threshold=0.3, direct_agreement_px=2.0)
  out_flows, out_cycle = filtering.chain_flows(pairs, flows, cycle, occluded, frames,
                                               rgb_threshold=0.3, direct_agreement_px=2.0,
                                               require_agreement=True)
  no_direct = cycle.copy()
  no_direct[1] = False
  _, chain_only = filtering.chain_flows(pairs, flows, no_direct, occluded, frames,
                                        rgb_threshold=0.3)
  chain_valid = chain_only[1] & (np.arange(W) < 30)[None]  # The chain alone, cycle-checked cols.
  # The disagreeing block is dropped (the loose rule kept the chain there) ...
  assert loose_cycle[1][1:5, :5].all() and not out_cycle[1][:5, :5].any()
  # ... the direct-only columns (cycle fails) are dropped, and agreeing pixels keep the direct
  # flow wherever the chain is valid.
  assert not out_cycle[1][:, 30:].any()
  agree = chain_valid.copy()
  agree[:5, :5] = False
  np.testing.assert_array_equal(out_cycle[1], agree)
  np.testing.assert_allclose(out_flows[1][agree], np.broadcast_to([3.0, -0.5], (agree.sum(), 2)))
  with pytest.raises(ValueError, match='direct_agreement_px'):
    filtering.chain_flows(pairs, flows, cycle, occluded, frames, rgb_threshold=0.3,
                          require_agreement=True)


def test_chaining_requires_adjacent_pairs():
  pairs, flows, cycle, occluded, frames = _chain_inputs()
  with pytest.raises(ValueError, match=r'adjacent pair \(1, 2\)'):
    filtering.chain_flows(pairs[[0, 1, 2, 4, 5]], flows[[0, 1, 2, 4, 5]], cycle[[0, 1, 2, 4, 5]],
                          occluded[[0, 1, 2, 4, 5]], frames, rgb_threshold=0.3)


def test_count_maps():
  pairs = np.array([[0, 1], [0, 2], [1, 0]])
  valid = np.zeros((3, 2, 2), bool)
  valid[0, 0, 0] = valid[1, 0, 0] = valid[1, 1, 1] = valid[2, 0, 1] = True
  counts, pair_counts = filtering.count_maps(pairs, valid, num_frames=3)
  assert counts.dtype == np.uint16 and counts.shape == (3, 2, 2)
  np.testing.assert_array_equal(counts[0], [[2, 0], [0, 1]])
  np.testing.assert_array_equal(counts[1], [[0, 1], [0, 0]])
  np.testing.assert_array_equal(counts[2], 0)
  np.testing.assert_array_equal(pair_counts, [1, 2, 1])
