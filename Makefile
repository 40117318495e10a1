# mailops -- the two commands are `make demo` and `make test`; both install what is missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export MAILOPS_DEVSERVER_DIR ?= /tmp/mailops-devserver

.PHONY: help install system-deps test demo lint format lab bench soak clean

help:
	@echo "make demo   - install what is missing, start the local mail server, seed, connect, sync, report"
	@echo "make test   - install what is missing and run the whole test suite"
	@echo "make lint   - ruff (lint + format check) and mypy"
	@echo "make lab    - JupyterLab on notebooks/ with the mailops kernel"
	@echo "make bench  - the sync benchmark against mbsync"
	@echo "make soak   - kills, network faults, concurrent syncs, send kills, reports during a sync (~15 min)"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { apt-get update -qq && apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name mailops --display-name "Python (mailops)" >/dev/null
	@touch $(STAMP)

system-deps:
	@scripts/install-system-deps.sh

install: $(STAMP) system-deps

test: install
	$(VENV)/bin/ruff check mailops tests bench
	$(VENV)/bin/ruff format --check mailops tests bench
	$(VENV)/bin/mypy
	$(PY) -m pytest -q

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

bench: install
	$(PY) bench/sync_bench.py

soak: install system-deps
	$(PY) -m mailops.dev.soak --budget $${SOAK_BUDGET:-1800}

clean:
	-$(VENV)/bin/mailops devserver stop
	rm -rf $(VENV) mailops.duckdb mailops.duckdb.secrets
