"""Pinned worker processes: disjoint core sets, results in job order, clear errors."""

import os

import pytest

from omnimotion_jax.evaluation import workers
from omnimotion_jax.errors import UserInputError

CORES = sorted(os.sched_getaffinity(0))


def test_core_sets_split_the_cores():
  sets = workers.core_sets(len(CORES))
  assert sorted(c for s in sets for c in s) == CORES and all(len(s) == 1 for s in sets)
  assert workers.core_sets(1) == [set(CORES)]
  with pytest.raises(UserInputError, match='--workers 0'):
    workers.core_sets(0)
  with pytest.raises(UserInputError, match=f'--workers {len(CORES) + 1}'):
    workers.core_sets(len(CORES) + 1)


@pytest.mark.skipif(len(CORES) < 2, reason='needs two CPU cores')
def test_run_pinned_runs_each_job_on_one_worker_core_set():
  # os.sched_getaffinity(0) run inside a worker returns that worker's pinning.
  seen = []
  results = workers.run_pinned(os.sched_getaffinity, [(0,)] * 4, 2, on_result=seen.append)
  assert len(results) == 4 and len(seen) == 4
  expected = [frozenset(s) for s in workers.core_sets(2)]
  assert all(frozenset(r) in expected for r in results)
