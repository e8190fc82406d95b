# One command to set up and run the main job, one to set up and run the tests.
#   make demo        -> .venv with revstats, then `revstats demo --out revstats-demo`
#   make test        -> .venv with revstats[dev], then the default test suite (no slow tests)
#   make test-slow   -> the calibration studies (marked `slow`)
#   make bench       -> the benchmark runner (ratios against the named peers)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: demo test test-slow bench lint clean

$(VENV)/.created:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	touch $@

$(VENV)/.core: $(VENV)/.created pyproject.toml
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.dev: $(VENV)/.created pyproject.toml
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.core

demo: $(VENV)/.core
	$(VENV)/bin/revstats demo --out revstats-demo

test: $(VENV)/.dev
	$(PY) -m pytest -m "not slow" -n 2 $(PYTEST_ARGS)

test-slow: $(VENV)/.dev
	$(PY) -m pytest -m slow -n 2 --dist loadfile $(PYTEST_ARGS)

bench: $(VENV)/.dev
	$(PY) -m benchmarks

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) revstats-demo .pytest_cache
