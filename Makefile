# adapter-registry: set-up, tests, demo. Every target installs what it needs from scratch.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export PYTHONHASHSEED ?= 0

.PHONY: install test test-all lint browser demo bench bench-quick clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: the CPU wheel on this machine's disk, never a CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q torch==2.13.0 -e '.[dev]'
	touch $(STAMP)

lint: install
	$(VENV)/bin/ruff check registry tests examples benchmarks migrations
	$(VENV)/bin/ruff format --check registry tests examples benchmarks migrations
	$(VENV)/bin/mypy registry

# Chromium and its driver from Debian's packages, for the browser tests of the serve UI. A no-op when
# both are there; where they cannot be installed (not root, no package mirror) the tests skip.
browser:
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    chromium chromium-driver >/dev/null) || \
	  echo "browser: chromium could not be installed; the UI browser tests will skip"

# PostgreSQL for the team-scale tests: each test creates (and drops) its own database there.
PG_URL ?= postgresql+psycopg2://postgres@127.0.0.1:5432/test
PG_ENV = $(shell pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null && echo ADAPTER_REGISTRY_TEST_PG=$(PG_URL))

# The default suite, then the slow one (crash loops, parallel writers, real training); pytest exits
# 5 when no test is marked slow, which is not a failure.
test: install lint browser
	$(PG_ENV) $(VENV)/bin/pytest -q
	$(PG_ENV) $(VENV)/bin/pytest -q -m 'slow and not gpu' || test $$? -eq 5

test-all: install lint browser
	$(PG_ENV) $(VENV)/bin/pytest -q -m ''

DATA_ROOT ?= ../shared/data

demo: install
	$(PY) examples/demo.py --data-root $(DATA_ROOT)

bench: install
	$(PY) -m benchmarks.run

bench-quick: install
	$(PY) -m benchmarks.run --quick

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
