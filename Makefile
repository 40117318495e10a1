# mailops -- the two commands are `make demo` and `make test`; both install what is missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# The lock: every Python package pinned (uv pip compile from pyproject.toml); `make upgrade`
# refreshes it, `make lock` re-resolves after a pyproject change keeping the other pins.
LOCK := constraints.txt
LOCK_PYTHON := 3.11
UV := $(VENV)/bin/uv
export MAILOPS_DEVSERVER_DIR ?= /tmp/mailops-devserver

.PHONY: help install system-deps test demo lint format lab bench soak clean lock upgrade

help:
	@echo "make demo   - install what is missing, start the local mail server, seed, connect, sync, report"
	@echo "make test   - install what is missing and run the whole test suite"
	@echo "make lint   - ruff (lint + format check) and mypy"
	@echo "make lab    - JupyterLab on notebooks/ with the mailops kernel"
	@echo "make bench  - sync vs mbsync and imap-tools, report queries at 1M activities (bench/results/latest.json)"
	@echo "make soak   - kills, network faults, concurrent syncs, send kills, reports during a sync (~15 min)"
	@echo "make lock   - re-resolve constraints.txt after a pyproject.toml change (other pins kept)"
	@echo "make upgrade - every package to its newest allowed version in constraints.txt"

$(STAMP): pyproject.toml $(LOCK)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { scripts/install-system-deps.sh python3-venv && rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q -c $(LOCK) pip setuptools wheel
	$(PY) -m pip install -q -c $(LOCK) --no-build-isolation -e '.[dev,ducklake]'
	$(PY) -m pip check
	$(PY) -m ipykernel install --sys-prefix --name mailops --display-name "Python (mailops)" >/dev/null
	@touch $(STAMP)

system-deps:
	@scripts/install-system-deps.sh

install: $(STAMP) system-deps

test: install
	$(VENV)/bin/ruff check mailops tests bench
	$(VENV)/bin/ruff format --check mailops tests bench
	$(VENV)/bin/mypy
	MAILOPS_LOCKED_ENV=1 $(PY) -m pytest -q

demo: install
	@scripts/demo.sh

lint: install
	$(VENV)/bin/ruff check mailops tests bench
	$(VENV)/bin/ruff format --check mailops tests bench
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff check --fix mailops tests bench
	$(VENV)/bin/ruff format mailops tests bench

lab: install
	@test -d $(VENV)/share/jupyter/kernels/mailops || $(PY) -m ipykernel install --sys-prefix --name mailops --display-name "Python (mailops)" >/dev/null
	MAILOPS_DB="$${MAILOPS_DB:-$(CURDIR)/mailops.duckdb}" $(VENV)/bin/jupyter lab --notebook-dir=notebooks --ip=127.0.0.1 --no-browser --allow-root

# the sync against mbsync (isync, from system-deps) and imap-tools (bench/run.py installs it
# from the lock), the report queries at 250k/1M activities: bench/results/latest.{json,md};
# BENCH_ARGS=--readme also writes README.md's figures (bench/readme.py)
bench: install system-deps
	$(PY) bench/run.py $(BENCH_ARGS)

soak: install system-deps
	$(PY) -m mailops.dev.soak --budget $${SOAK_BUDGET:-1800}

# uv is pinned in the lock too (the dev extra); --universal: one file for Linux/macOS and every
# Python from 3.11 on; pip, setuptools and wheel are pinned for the install step above.
LOCK_ARGS = pyproject.toml - --all-extras --universal --python-version $(LOCK_PYTHON) \
	--annotation-style line --custom-compile-command "make lock" -o $(LOCK)

lock: $(STAMP)
	printf 'pip\nsetuptools>=68\nwheel\n' | $(UV) pip compile $(LOCK_ARGS)
	@$(MAKE) --no-print-directory install

upgrade: $(STAMP)
	printf 'pip\nsetuptools>=68\nwheel\n' | $(UV) pip compile --upgrade $(LOCK_ARGS)
	@$(MAKE) --no-print-directory install
	@echo "constraints.txt upgraded: run make test, then commit it"

clean:
	-$(VENV)/bin/mailops devserver stop
	rm -rf $(VENV) mailops.duckdb mailops.duckdb.secrets
