# The README's two commands. Each creates .venv (if missing) and installs the package into it.
#   make test   runs the whole test suite
#   make demo   runs the main job on the bundled default input (out/demo/report/index.html)

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test demo venv clean

venv: $(STAMP)

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# One test process per core (pytest-xdist), whole files per process (module fixtures are built
# once), the slowest files first (tests/conftest.py).
test: $(STAMP)
	$(PY) -m pytest tests -n $(shell $(PY) -c 'import os; print(max(1, len(os.sched_getaffinity(0))))') --dist loadfile --no-loadscope-reorder

demo: $(STAMP)
	$(VENV)/bin/omnimotion-jax demo --workdir out/demo

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
