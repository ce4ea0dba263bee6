#!/usr/bin/env bash
# One-shot accelerator check (benchmarks/README.md, "Accelerator check"): within ~8 minutes on one
# GPU it sets up the environment, runs the test suite on the accelerator, then
# benchmarks/device_check.py (memory analysis, transfer guard, matmul precision, train-step and
# tracking speed, a 2k-step quality run, RAFT flow speed) -> $OUT/device_check_<platform>.{json,md}.
#
#   bash benchmarks/device_check.sh                 # OUT defaults to benchmarks/results
#   OUT=some/dir bash benchmarks/device_check.sh    # elsewhere
#
# Environment: a host with network gets .venv with the CUDA extra (`pip install -e '.[cuda12]'`);
# a host without it uses its own python3 with jax, and wheels of the missing packages
# (ml_collections, mediapy, tensorflow-datasets, ...) placed in .whl/ beforehand. On a CPU-only machine
# the accelerator parts are skipped and the output says so.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
  ACCEL=cuda
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
else
  ACCEL=none
fi

if [ -d .whl ]; then  # No network: the image's python3 plus carried wheels.
  SITE=$(mktemp -d)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" .whl/*.whl
  export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
  PY=python3
else
  make venv >/dev/null
  if [ "$ACCEL" = cuda ]; then .venv/bin/pip install -q -e '.[cuda12]'; fi
  PY=.venv/bin/python
fi

if [ "$ACCEL" = cuda ]; then
  echo "== test suite on the GPU"
  # tests/conftest.py defaults JAX_PLATFORMS to cpu; this runs it on the accelerator instead.
  JAX_PLATFORMS=cuda timeout 240 "$PY" -m pytest tests -q -x -p no:cacheprovider \
    2>&1 | tail -5 | tee "$OUT/device_check_tests.txt" || true
else
  echo "== test suite on the accelerator: skipped (no GPU; CI runs it on the CPU)"
fi

echo "== device_check.py"
"$PY" benchmarks/device_check.py --out "$OUT"
