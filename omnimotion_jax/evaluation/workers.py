"""Several one-video jobs at a time on a multi-core CPU: worker processes pinned to core sets.

On a small CPU one training process keeps its cores only partly busy (XLA:CPU runs a small step's
chain of matmuls with little parallelism; on the 2-core development machine one process on both
cores keeps them ~1.5x busy). W processes, each pinned to its own share of the cores and training
its own video, keep them all busy: two one-core workers do 1.36x the steps per second of one
two-core process there (benchmarks/QUALITY.md, session 7). Each video is then computed on fewer
threads, so its floating-point sums run in another order than in a one-process run: results agree
to within that reordering, not bit for bit, unless both runs use the same pinning.

Workers are spawned (no forked JAX state) and pin themselves before JAX starts; they show no
progress bars or info lines (the parent logs each finished job).
"""

import concurrent.futures
import logging
import multiprocessing
import os
from collections.abc import Callable, Iterable

from omnimotion_jax import progress
from omnimotion_jax.config import enable_compilation_cache
from omnimotion_jax.errors import UserInputError


def core_sets(num_workers: int) -> list[set[int]]:
  """Splits this process's CPU cores into `num_workers` disjoint, non-empty sets."""
  cores = sorted(os.sched_getaffinity(0))
  if not 1 <= num_workers <= len(cores):
    raise UserInputError(f'--workers {num_workers}: must be between 1 and the {len(cores)} CPU '
                         'cores this process may use.')
  return [set(cores[i::num_workers]) for i in range(num_workers)]


def _pin(queue) -> None:
  """Pool initialiser: take one core set and pin this process to it before XLA starts."""
  os.sched_setaffinity(0, queue.get())
  enable_compilation_cache()
  progress.LOGGER.setLevel(logging.WARNING)  # Bars of several workers would interleave.


def run_pinned(fn: Callable, jobs: Iterable[tuple], num_workers: int,
               on_result: Callable | None = None) -> list:
  """Runs fn(*job) for every job in `num_workers` pinned worker processes.

  fn must be a module-level function (it is pickled). Results are returned in job order;
  on_result(result) is called as each one finishes. An exception in a job is re-raised here.
  """
  jobs = list(jobs)
  context = multiprocessing.get_context('spawn')
  queue = context.Queue()
  for cores in core_sets(num_workers):
    queue.put(cores)
  results = [None] * len(jobs)
  with concurrent.futures.ProcessPoolExecutor(num_workers, mp_context=context, initializer=_pin,
                                              initargs=(queue,)) as pool:
    futures = {pool.submit(fn, *job): index for index, job in enumerate(jobs)}
    for future in concurrent.futures.as_completed(futures):
      results[futures[future]] = future.result()
      if on_result:
        on_result(results[futures[future]])
  return results
