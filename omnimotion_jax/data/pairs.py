"""Pair plans: which ordered frame pairs (i, j) get stored correspondences.

The reference stores all N(N-1) ordered pairs (`exhaustive`), which grows quadratically: a
250-frame 256x256 clip needs ~17 GB even at float16. The default `banded` plan is linear in N:

  * dense band: every ordered pair with gap 1..dense_gap, in both directions (these are the
    pairs the sampler draws most; adjacent pairs carry half the probability mass);
  * long range: gaps g = round(long_stride * growth^k) (k = 0, 1, ...; g > dense_gap,
    g <= max_gap and g <= N - 1; growth = 2 by default), stored forward only, (i, i + g). The training sampler swaps a pair's direction
    half the time anyway (using the cycle mask only), so the reverse pair would add bytes but
    little supervision. Both directions still get a direct flow, for the cycle check.

With the default dense_gap = 4, long_stride = 8 and N = 250 the long gaps are 8, 16, 32, 64, 128,
i.e. at most 2 * 4 + 5 = 13 stored pairs per frame: ~0.91 GB at 256x256 (limit 1 GB), against
~17 GB exhaustive. Training samples gaps up to 20 growing to ~70, and long pairs are chained
through every intermediate frame (filtering.chain_flows), so each is dense where reliable.

Every plan stores all adjacent pairs in both directions (chaining needs them), and `direct`
(pairs that get a direct flow) is `pairs` plus their reverses.
"""

import dataclasses

import numpy as np

from omnimotion_jax.errors import UserInputError

PLANS = ('exhaustive', 'banded')
DEFAULT_LONG_GAP_GROWTH = 2.0  # Ratio between consecutive long-range gaps of the banded plan.


@dataclasses.dataclass(frozen=True)
class PairPlan:
  """A pair plan for a video of `num_frames` frames.

  Attributes:
    name: 'exhaustive' or 'banded'.
    num_frames: N.
    pairs: int32 [P, 2] stored ordered pairs (i, j), i != j, sorted by (i, j).
    direct: int32 [D, 2] ordered pairs that get a direct flow: `pairs` and their reverses, sorted.
  """
  name: str
  num_frames: int
  pairs: np.ndarray
  direct: np.ndarray

  @property
  def gaps(self) -> np.ndarray:
    """int32 [P] frame gap |i - j| of each stored pair."""
    return np.abs(self.pairs[:, 1] - self.pairs[:, 0]).astype(np.int32)

  def summary(self) -> dict:
    """Pair counts for logs and benchmarks."""
    gaps, counts = np.unique(self.gaps, return_counts=True)
    return {'plan': self.name, 'num_frames': self.num_frames, 'stored_pairs': len(self.pairs),
            'direct_flows': len(self.direct),
            'stored_pairs_per_frame': round(len(self.pairs) / self.num_frames, 2),
            'pairs_per_gap': {int(g): int(c) for g, c in zip(gaps, counts)}}


def banded_gaps(num_frames: int, dense_gap: int, long_stride: int,
                max_gap: int | None = None, growth: float = DEFAULT_LONG_GAP_GROWTH
                ) -> tuple[list[int], list[int]]:
  """(dense gaps, long gaps) of the banded plan (module docstring), each capped at N - 1."""
  limit = num_frames - 1 if max_gap is None else min(max_gap, num_frames - 1)
  dense = list(range(1, min(dense_gap, limit) + 1))
  long = []
  k = 0
  while (gap := round(long_stride * growth ** k)) <= limit:
    if gap > dense_gap and gap not in long:
      long.append(gap)
    k += 1
  return dense, long


def make_plan(name: str, num_frames: int, dense_gap: int = 4, long_stride: int = 8,
              max_gap: int | None = None,
              long_gap_growth: float = DEFAULT_LONG_GAP_GROWTH) -> PairPlan:
  """Builds a pair plan.

  Args:
    name: 'exhaustive' (all N(N-1) ordered pairs) or 'banded' (module docstring).
    num_frames: N >= 2.
    dense_gap: banded: all ordered pairs with gap <= dense_gap (frames), >= 1.
    long_stride: banded: the first long-range gap (frames), doubled repeatedly, >= 1.
    max_gap: optional cap on stored gaps (frames) for either plan; None = N - 1. Must be >= 1.
    long_gap_growth: banded: ratio between consecutive long gaps (> 1; rounded to frames).

  Returns:
    The PairPlan.
  """
  if name not in PLANS:
    raise UserInputError(f'data.pair_plan={name!r}: unknown pair plan; use one of {PLANS}.')
  if num_frames < 2:
    raise ValueError(f'a pair plan needs at least 2 frames, got {num_frames}')
  if int(dense_gap) != dense_gap or dense_gap < 1:
    raise UserInputError(f'data.dense_gap={dense_gap!r}: expected an integer >= 1 (frames).')
  if int(long_stride) != long_stride or long_stride < 1:
    raise UserInputError(f'data.long_stride={long_stride!r}: expected an integer >= 1 (frames).')
  if not long_gap_growth > 1:
    raise UserInputError(f'data.long_gap_growth={long_gap_growth!r}: expected a ratio > 1.')
  if max_gap is not None and (int(max_gap) != max_gap or max_gap < 1):
    raise UserInputError(f'max_gap={max_gap!r}: expected None or an integer >= 1 (frames).')
  limit = num_frames - 1 if max_gap is None else min(max_gap, num_frames - 1)
  frames = np.arange(num_frames)
  stored = []
  if name == 'exhaustive':
    both_ways = range(1, limit + 1)
    forward_only = []
  else:
    both_ways, forward_only = banded_gaps(num_frames, dense_gap, long_stride, max_gap,
                                          long_gap_growth)
  for gap in both_ways:
    stored.append(np.stack([frames[:-gap], frames[gap:]], 1))
    stored.append(np.stack([frames[gap:], frames[:-gap]], 1))
  for gap in forward_only:
    stored.append(np.stack([frames[:-gap], frames[gap:]], 1))
  pairs = _sorted_unique(np.concatenate(stored))
  direct = _sorted_unique(np.concatenate([pairs, pairs[:, ::-1]]))
  return PairPlan(name=name, num_frames=num_frames, pairs=pairs, direct=direct)


def _sorted_unique(pairs: np.ndarray) -> np.ndarray:
  return np.unique(pairs.astype(np.int32), axis=0)


def store_bytes(num_pairs: int, num_frames: int, height: int, width: int) -> int:
  """Array bytes of a store (store.py) with these sizes (the .npz adds ~1 KB of headers)."""
  pixels = height * width
  mask_bytes = 2 * num_pairs * ((pixels + 7) // 8)  # cycle + occluded, bit-packed
  return (num_frames * pixels * 3  # frames uint8
          + num_pairs * pixels * 2 * 2  # flows float16
          + mask_bytes
          + num_frames * pixels * 2  # counts uint16
          + num_pairs * (2 * 4 + 4)  # pairs int32 [P, 2] + pair_counts int32 [P]
          + num_frames * 4)  # frame_indices int32
