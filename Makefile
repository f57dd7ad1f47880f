# Developer entry points. On a fresh clone, `make demo` and `make test` set up
# everything they need (a virtualenv in .venv with the project installed).

SHELL := /bin/bash

VENV := .venv
PY := $(VENV)/bin/python
# Two stamps, re-installed when pyproject.toml is newer: the demo needs only the
# runtime dependencies; tests, lint and type checks need the dev toolchain too
# (which includes the runtime, so installing it refreshes both stamps).
RUNTIME_STAMP := $(VENV)/.runtime-stamp
DEV_STAMP := $(VENV)/.dev-stamp

# The Postgres server the Postgres tests use (they fail, never skip, without it).
DURABLE_JOBS_TEST_POSTGRES_URL ?= postgresql://postgres@127.0.0.1:5432/test
export DURABLE_JOBS_TEST_POSTGRES_URL
export PIP_DISABLE_PIP_VERSION_CHECK := 1

# The docs site, strict: a broken link or reference fails the build.
# No --quiet: it hides the warnings that --strict turns into a failure (a broken link passes).
MKDOCS_BUILD := NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

.PHONY: help demo ui test lint typecheck bench docs clean

help:
	@echo "make demo       set up .venv and run examples/demo.py (SQLite store in ./demo-data/)"
	@echo "make ui         serve the web dashboard on the demo's store (http://127.0.0.1:8470/)"
	@echo "make test       set up .venv, then lint, type-check and run the whole test suite"
	@echo "make lint       ruff check and format check, the import layers (lint-imports)"
	@echo "make typecheck  mypy (strict)"
	@echo "make bench      install the bench extra, run benchmarks/*.py (tables also in bench-results.md)"
	@echo "make docs       build the docs site (mkdocs, strict: a broken link fails) into site/"
	@echo "make clean      remove .venv and caches"

$(PY):
	if command -v python3.11 >/dev/null; then python3.11 -m venv $(VENV); else python3 -m venv $(VENV); fi

$(RUNTIME_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -e .
	touch $(RUNTIME_STAMP)

$(DEV_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -e '.[dev]'
	touch $(DEV_STAMP) $(RUNTIME_STAMP)

demo: $(RUNTIME_STAMP)
	$(PY) examples/demo.py

ui: $(RUNTIME_STAMP)
	$(PY) -m pip install -q -e '.[ui]'
	$(VENV)/bin/durable-jobs ui --store sqlite:///demo-data/jobs.db

test: $(DEV_STAMP)
	scripts/ensure-postgres
	scripts/ensure-chromium
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy
	$(MKDOCS_BUILD)
	$(VENV)/bin/pytest

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

typecheck: $(DEV_STAMP)
	$(VENV)/bin/mypy

# The peers the benchmarks compare with (APScheduler 4, pgqueuer, procrastinate).
BENCH_STAMP := $(VENV)/.bench-installed-stamp
# Pending alarms for the startup benchmark (1000000 takes minutes to write here).
BENCH_STARTUP_ALARMS ?= 200000

$(BENCH_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench: $(DEV_STAMP) $(BENCH_STAMP)
	scripts/ensure-postgres
	set -o pipefail; { \
		for f in runs client_calls lateness queue_workload workers get_state store_throughput execute_writes debounce_windows telemetry gc_freeze; do \
			$(PY) benchmarks/$$f.py || exit 1; \
		done; \
		$(PY) benchmarks/startup.py --alarms $(BENCH_STARTUP_ALARMS) || exit 1; \
	} | tee bench-results.md

docs: $(DEV_STAMP)
	$(MKDOCS_BUILD)

clean:
	rm -rf $(VENV) site .mypy_cache .ruff_cache .pytest_cache .hypothesis build dist src/*.egg-info
	find . \( -path ./.git -o -path ./$(VENV) \) -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +
