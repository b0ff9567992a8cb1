# vitalstream — developer entry points. `make run` and `make test` are all a new machine needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint typecheck unit integration e2e deploy-check bench loadtest chaos clean

install: $(STAMP) node_modules/.installed

$(STAMP): requirements.lock pyproject.toml service/_fastpath.c
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(BIN)/uv || $(BIN)/pip install -q --disable-pip-version-check uv==0.13.9
	$(BIN)/uv pip install --python $(BIN)/python -q -r requirements.lock
	$(BIN)/uv pip install --python $(BIN)/python -q --no-deps -e .
	@touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

lock:  ## re-resolve the pinned dependency lock
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 -o requirements.lock -q

run: install  ## the local stack with a simulated fleet, until Ctrl-C
	$(BIN)/vitalstream dev up --fleet 20 --rate 1

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

deploy-check: install
	PATH="$(CURDIR)/$(BIN):$$PATH" bash deploy/check.sh

unit: install
	$(BIN)/pytest tests/unit -q

test: install lint typecheck deploy-check
	$(BIN)/pytest -q --ignore=tests/unit/test_deploy.py  # deploy-check ran it

BENCH_PINS := "dlt[postgres]==1.31.0" psycopg2-binary==2.9.13

bench: install  ## benchmarks; dlt (the load baseline) and wrk (the HTTP load generator) are installed here only
	@$(BIN)/python -c "import dlt" 2>/dev/null || $(BIN)/uv pip install --python $(BIN)/python -q $(BENCH_PINS)
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq wrk >/dev/null; } \
	  || { echo "make bench needs wrk: apt-get install wrk" >&2; exit 1; }
	$(BIN)/python -m bench

LOADTEST_SHAPE ?= steady
LOADTEST_USERS ?= 200
LOADTEST_DURATION ?= 60

loadtest: install  ## locust (2 processes) against the local stack, ≤ 2 min; reconciles; reports in loadtest/reports/
	$(BIN)/python -m loadtest.load --shape $(LOADTEST_SHAPE) --users $(LOADTEST_USERS) --duration $(LOADTEST_DURATION)

chaos: install  ## the fault campaign, ≤ 10 min: every scenario must reconcile (0 missing, unexpected, doubled)
	$(BIN)/python -m loadtest.chaos

clean:
	rm -rf $(VENV) node_modules .vitalstream .pytest_cache .mypy_cache .ruff_cache build service/*.so
