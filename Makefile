# Two commands from a fresh clone: `make demo` and `make test`. Python 3.11+ is the only prerequisite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export GX_ANALYTICS_ENABLED := false
# Python caches compiled modules in __pycache__ unless PYTHONDONTWRITEBYTECODE is set, as some CI and
# container images do. Without the cache every process compiles this project's modules afresh and
# pytest re-writes every test module's assertions in each worker: collecting the suite took 15.3 CPU-s
# against 8.5 s with it (`pytest --collect-only`, 2026-12-07), and each worker, `airflow dags test`
# subprocess and Celery task pays its share. So the targets below write the cache.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: demo test test-profile test-unit install browser redis celery-check bench bench-quick sandbox airflow demo-reset lint clean wheel help compose-env

# The venv gets the pinned development set, then this project as two editable distributions: the
# backbone package and Airflow provider (pyproject.toml, code in include/) and the development kit
# (devkit/pyproject.toml). Nothing needs PYTHONPATH.
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml devkit/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e . -e devkit
	touch $(STAMP)

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## /  make \1\t/' | expand -t 24

wheel: $(STAMP)  ## build the installable package (dist/*.whl): what a production image or a managed Airflow installs
	$(BIN)/pip wheel --quiet --no-deps --no-build-isolation --wheel-dir dist .

install: $(STAMP)  ## the venv: pinned dependencies, the package and the development kit (editable)

VENDORS ?= hubspot-quickbooks
PSA ?= psa

demo: $(STAMP)  ## run every flow end to end against the sandbox, print the run table (VENDORS=salesforce-xero, PSA=kantata for the others)
	PATH=$(CURDIR)/$(BIN):$$PATH BACKBONE_DEMO_VENDORS=$(VENDORS) BACKBONE_DEMO_PSA=$(PSA) $(BIN)/python -m backbone_devtools demo

# The suite runs on TEST_WORKERS pytest-xdist workers, each with its own PostgreSQL, sandbox port and
# Airflow home; most of an end-to-end test's time is spent waiting (retry delays, dag.test()'s polling,
# slow-answer faults), so more workers than cores pays.
TEST_WORKERS ?= 5

test: $(STAMP) browser redis lint  ## lint, then the whole test suite on TEST_WORKERS workers (starts and stops its own PostgreSQL, Redis, sandbox and Airflow services)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest -n $(TEST_WORKERS) --durations=15

test-profile: $(STAMP) browser redis  ## the whole suite as `make test` runs it, plus where its CPU went: per file and test (process, children, PostgreSQL, DAG runs), the machine's busy CPU (.test-profile/latest.md)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest -n $(TEST_WORKERS) -p backbone_devtools.suite_profile -q

test-unit: $(STAMP)  ## the unit layer alone: every test that starts nothing (no PostgreSQL, sandbox or Airflow DB), on all cores
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest -m unit -n auto --dist worksteal -q

browser:  ## Debian's Chromium for the Finance page browser test (installed when missing and run as root)
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the browser test"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || echo "could not install chromium: the browser test will be skipped"; \
	  else echo "chromium is missing and this is not root: the browser test will be skipped"; fi; }

redis:  ## Debian's redis-server, the Celery broker of `make celery-check` (installed when missing and run as root)
	@command -v redis-server >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's redis-server for the distributed check"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null) || echo "could not install redis-server: the Celery check will be skipped"; \
	  else echo "redis-server is missing and this is not root: the Celery check will be skipped"; fi; }

celery-check: $(STAMP) redis  ## every flow on the CeleryExecutor with two workers, one killed mid-run (starts and stops all it needs)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m backbone_devtools.celery_check

bench: $(STAMP)  ## performance figures at full size (bench/results/latest.md); ratios against same-run baselines
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python bench/run.py

bench-quick: $(STAMP)  ## the same at small sizes, a few minutes on 2 cores
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python bench/run.py --quick

SANDBOX_HOST ?= 127.0.0.1

sandbox: $(STAMP)  ## the vendor sandbox alone, on 127.0.0.1:8765 (SANDBOX_HOST=0.0.0.0 for `astro dev` containers)
	$(BIN)/python -m backbone_sandbox --host $(SANDBOX_HOST) --state-file .demo/sandbox-state.pickle

compose-env:  ## write .env for docker-compose.yaml: fresh secrets and the trial's vendor Connections (never overwrites)
	$(PYTHON) docker/make_env.py

AIRFLOW_HOST ?= 127.0.0.1

airflow: $(STAMP)  ## Airflow itself (UI on http://localhost:8080, loopback only unless AIRFLOW_HOST=0.0.0.0) with the demo's database and the sandbox
	AIRFLOW_HOST=$(AIRFLOW_HOST) PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m backbone_devtools airflow

demo-reset:  ## forget the demo's warehouse, Airflow and sandbox state (both vendor pairs, both PSAs)
	-for vendors in hubspot-quickbooks salesforce-xero; do for psa in psa kantata; do \
	  BACKBONE_DEMO_VENDORS=$$vendors BACKBONE_DEMO_PSA=$$psa $(BIN)/python -m backbone_devtools pg-stop; done; done
	rm -rf .demo .demo-kantata .demo-salesforce-xero .demo-salesforce-xero-kantata

LINTED := include devkit dags tests plugins bench docker

lint: $(STAMP)  ## ruff's rules (with function complexity at most 15) and its formatting, on all project code
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

clean: demo-reset  ## remove the venv and the demo's state
	rm -rf $(VENV) dist build include/*.egg-info devkit/*.egg-info
