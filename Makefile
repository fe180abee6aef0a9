# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEMO_ARGS ?=

.PHONY: demo test lint bench clean

# The venv is rebuilt when the project's dependencies change, and when a C extension's source does (an editable
# install compiles pipeline/_record.c and pipeline/_fastfp.c in place; a stale build would be the code that runs).
$(VENV)/.installed: pyproject.toml setup.py pipeline/_record.c pipeline/_fastfp.c
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.test-installed: $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[test,bench]'
# The dashboard is tested in headless Chromium (tests/test_webapp_browser.py): Debian's package.
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)
# Spark (tests/test_spark_history.py) runs on a JVM: Debian's default JRE when the machine has no java.
	command -v java >/dev/null || (apt-get update && apt-get install -y default-jre-headless)
	touch $@

# Options of `duckpulse demo` pass through DEMO_ARGS: make demo DEMO_ARGS="--duration 30 --workers 2"
demo: $(VENV)/.installed
	$(VENV)/bin/duckpulse demo $(DEMO_ARGS)

lint: $(VENV)/.test-installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: lint
	$(PY) -m pytest --cov --cov-branch --cov-report=term --cov-fail-under=85 $(PYTEST_ARGS)

bench: $(VENV)/.test-installed
	for f in benchmarks/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache .coverage*
