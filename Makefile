# vitalstream — developer entry points. `make run` and `make test` are all a new machine needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint typecheck unit integration e2e e2e-redshift deploy-check bench bigfiles mutate loadtest chaos clean fuzz fuzz-build fuzz-ci audit

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

test: install lint typecheck deploy-check audit fuzz-ci
	$(BIN)/pytest -q --ignore=tests/unit/test_deploy.py  # deploy-check ran it

e2e-redshift: install  # the vitals fleet e2e test on the Redshift Data API path (strict stand-in), ~1 min
	VITALSTREAM_E2E_REDSHIFT=1 $(BIN)/pytest -q tests/e2e/test_vitals_pipeline.py -k redshift

# -- security: coverage-guided fuzzing of the C fast path, dependency audits (SECURITY.md) ------------------------
ATHERIS_PIN := atheris==2.3.0
PIP_AUDIT_PIN := pip-audit==2.10.1
FUZZ_SECONDS ?= 600
FUZZ_CI_SECONDS ?= 60
SANITIZER_ENV = ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1:detect_stack_use_after_return=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	LD_PRELOAD="$$($(BIN)/python -c 'import atheris, os; print(os.path.join(atheris.path(), "asan_with_fuzzer.so"))')"
FUZZ_ENV = $(SANITIZER_ENV) PYTHONMALLOC=malloc  # every Python allocation through ASan too: slower, sees more
FUZZ_RUN = $(BIN)/python -m fuzz.fastpath_target -dict=fuzz/json.dict -artifact_prefix=build/fuzz/artifacts/ \
	-print_final_stats=1 -timeout=10 -rss_limit_mb=4096 -max_len=8192 build/fuzz/corpus fuzz/corpus

fuzz-build: install  ## the extension under ASan+UBSan+libFuzzer (clang), and atheris; installed here only
	@command -v clang >/dev/null && [ -d /usr/lib/llvm-14/lib/clang/14.0.6/lib/linux ] \
	  || { [ "$$(id -u)" = 0 ] && apt-get update -qq \
	       && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends clang libclang-rt-14-dev >/dev/null; } \
	  || { echo "make fuzz needs clang: apt-get install clang libclang-rt-14-dev" >&2; exit 1; }
	@$(BIN)/python -c "import atheris" 2>/dev/null || $(BIN)/uv pip install --python $(BIN)/python -q $(ATHERIS_PIN)
	@mkdir -p build/fuzz/corpus build/fuzz/artifacts
	$(BIN)/python -m fuzz.build

fuzz: fuzz-build  ## coverage-guided fuzzing of service/_fastpath.c for FUZZ_SECONDS (default 600)
	$(FUZZ_ENV) $(FUZZ_RUN) -max_total_time=$(FUZZ_SECONDS)

fuzz-ci: fuzz-build  ## CI: the fuzzer for FUZZ_CI_SECONDS, then the C path's hypothesis tests on the sanitizer build
	$(FUZZ_ENV) $(FUZZ_RUN) -max_total_time=$(FUZZ_CI_SECONDS) 2>&1 | grep -Ev '^#[0-9]+\s+(NEW|REDUCE|pulse|RELOAD)|# Uses: |^######' | tail -n 25; exit $${PIPESTATUS[0]}
	$(SANITIZER_ENV) $(BIN)/python -m pytest -p fuzz.sanitized -q -p no:cacheprovider \
	  tests/unit/test_gateway_fastpath.py tests/unit/test_security_fastpath.py

audit: install  ## known vulnerabilities in requirements.lock (pip-audit) and kinesalite's npm tree (npm audit)
	$(BIN)/python .ci/audit.py

BENCH_PINS := "dlt[postgres]==1.31.0" psycopg2-binary==2.9.13

bench: install  ## benchmarks; dlt (the load baseline) and wrk (the HTTP load generator) are installed here only
	@$(BIN)/python -c "import dlt" 2>/dev/null || $(BIN)/uv pip install --python $(BIN)/python -q $(BENCH_PINS)
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq wrk >/dev/null; } \
	  || { echo "make bench needs wrk: apt-get install wrk" >&2; exit 1; }
	$(BIN)/python -m bench

bigfiles: install  ## batch files at full size: 100 MB and 1 GB claims CSV (plain, gzip), 500 MB FHIR NDJSON (~1 h here)
	BENCH_BIGFILES=1 $(BIN)/python -m bench batchfiles

MUTATE_PINS := mutmut==3.8.1
MUTATE_SECONDS ?= 880
MUTATE_CHILDREN ?= 2
define MUTATE_SCORE
import collections, subprocess, sys
out = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], capture_output=True, text=True)
n = collections.Counter(line.rsplit(": ", 1)[-1].strip() for line in out.stdout.splitlines() if ": " in line)
caught = n["killed"] + n["timeout"] + n["caught by type check"]
checked = sum(n.values()) - n["not checked"] - n["skipped"]
print(f"mutation score: {100 * caught / max(checked, 1):.1f}% of the {checked} mutants checked ({sum(n.values())} in all): "
      f"{n['killed']} killed by a test, {n['caught by type check']} by mypy, {n['timeout']} timed out, "
      f"{n['survived']} survived, {n['no tests']} without a test, {n['suspicious'] + n['segfault']} suspicious/crashed")
endef
export MUTATE_SCORE

# Each run is bounded by MUTATE_SECONDS and resumes from mutants/ (mutmut re-checks the functions that changed and
# the mutants not checked yet); MUTATE_FRESH=1 starts over.
mutate: install  ## mutation testing of the pure modules with their unit tests (mutmut, installed here only); <= 15 min
	@$(BIN)/python -c "import mutmut" 2>/dev/null || $(BIN)/uv pip install --python $(BIN)/python -q $(MUTATE_PINS)
	@if [ -n "$(MUTATE_FRESH)" ]; then rm -rf mutants; fi
	@start=$$(date +%s); PATH="$(CURDIR)/$(BIN):$$PATH" timeout $(MUTATE_SECONDS) $(BIN)/mutmut run \
	  --max-children $(MUTATE_CHILDREN) > .mutmut-run.log 2>&1; status=$$?; \
	  echo "mutmut run: $$(( $$(date +%s) - start )) s (bound $(MUTATE_SECONDS) s), exit $$status"; \
	  if [ $$status -eq 124 ]; then echo "stopped at the bound: partial; the next make mutate resumes" >&2; \
	  elif [ $$status -ne 0 ]; then tail -c 600 .mutmut-run.log | tr '\r' '\n' | tail -n 4 >&2; exit $$status; fi
	@echo "mutants no test or type check caught (mutmut show NAME for the diff):"
	@$(BIN)/mutmut results | grep -E ": (survived|no tests|suspicious|segfault)$$" || echo "    none"
	@$(BIN)/python -c "$$MUTATE_SCORE"

LOADTEST_SHAPE ?= steady
LOADTEST_USERS ?= 200
LOADTEST_DURATION ?= 60

loadtest: install  ## locust (2 processes) against the local stack, ≤ 2 min; reconciles; reports in loadtest/reports/
	$(BIN)/python -m loadtest.load --shape $(LOADTEST_SHAPE) --users $(LOADTEST_USERS) --duration $(LOADTEST_DURATION)

chaos: install  ## the fault campaign, ≤ 10 min: every scenario must reconcile (0 missing, unexpected, doubled)
	$(BIN)/python -m loadtest.chaos

clean:
	rm -rf $(VENV) node_modules .vitalstream .pytest_cache .mypy_cache .ruff_cache build service/*.so mutants .mutmut-run.log
