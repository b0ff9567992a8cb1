# vitalstream — developer entry points. `make run` and `make test` are all a new machine needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint typecheck unit integration e2e deploy-check bench mutate clean

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

MUTATE_PINS := mutmut==3.8.1
MUTATE_SECONDS ?= 840
MUTATE_CHILDREN ?= 2
define MUTATE_SCORE
import json
s = json.load(open("mutants/mutmut-cicd-stats.json"))
tested = s["total"] - s["skipped"]
caught = s["killed"] + s["timeout"]
checked = caught + s["survived"] + s["no_tests"] + s["suspicious"]
print(f"mutation score: {100 * caught / max(checked, 1):.1f}% of the {checked} mutants checked ({tested} in all): "
      f"{caught} caught, {s['survived']} survived, {s['no_tests']} without a test, {s['suspicious']} suspicious")
endef
export MUTATE_SCORE

# Each run is bounded by MUTATE_SECONDS and resumes from mutants/ (mutmut re-checks the functions that changed and
# the mutants not checked yet); MUTATE_FRESH=1 starts over.
mutate: install  ## mutation testing of the pure modules with their unit tests (mutmut, installed here only); <= 15 min
	@$(BIN)/python -c "import mutmut" 2>/dev/null || $(BIN)/uv pip install --python $(BIN)/python -q $(MUTATE_PINS)
	@if [ -n "$(MUTATE_FRESH)" ]; then rm -rf mutants; fi
	@timeout $(MUTATE_SECONDS) $(BIN)/mutmut run --max-children $(MUTATE_CHILDREN) > .mutmut-run.log 2>&1; \
	  status=$$?; if [ $$status -ne 0 ]; then tail -c 300 .mutmut-run.log | tr '\r' '\n' | tail -n 2; \
	  echo "mutmut run stopped (exit $$status) at the $(MUTATE_SECONDS) s bound: partial; make mutate resumes" >&2; fi
	@$(BIN)/mutmut export-cicd-stats > /dev/null
	@echo "surviving mutants (mutmut show NAME for the diff):"
	@$(BIN)/mutmut results | grep -v ": not checked$$" || true
	@$(BIN)/python -c "$$MUTATE_SCORE"

clean:
	rm -rf $(VENV) node_modules .vitalstream .pytest_cache .mypy_cache .ruff_cache build service/*.so mutants .mutmut-run.log
