# adapter-registry: set-up, tests, demo. Every target installs what it needs from scratch.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export PYTHONHASHSEED ?= 0

.PHONY: install test test-all lint browser s3server demo bench bench-quick mutants clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: the CPU wheel on this machine's disk, never a CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q torch==2.13.0 -e '.[dev]'
	touch $(STAMP)

lint: install
	$(VENV)/bin/ruff check registry tests examples benchmarks migrations tools
	$(VENV)/bin/ruff format --check registry tests examples benchmarks migrations tools
	$(VENV)/bin/mypy registry

# Chromium and its driver from Debian's packages, for the browser tests of the serve UI. A no-op when
# both are there; where they cannot be installed (not root, no package mirror) the tests skip.
browser:
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    chromium chromium-driver >/dev/null) || \
	  echo "browser: chromium could not be installed; the UI browser tests will skip"

# An S3-compatible server for the artifact-store tests: SeaweedFS (Debian's seaweedfs-bin) where
# the Debian release packages it. Debian 12 does not, and then the tests start moto's standalone
# server instead (moto[server], a test dependency that `install` brings). Best effort, never fails.
s3server:
	@command -v weed >/dev/null 2>&1 || ! apt-cache show seaweedfs-bin >/dev/null 2>&1 || \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq seaweedfs-bin >/dev/null 2>&1 || \
	  echo "s3server: seaweedfs-bin could not be installed; the S3 tests use moto's server"

# PostgreSQL for the team-scale tests: each test creates (and drops) its own database and role
# there. ADAPTER_REGISTRY_TEST_PG from the environment wins (it may carry a password); otherwise
# the local server is used when it is up.
PG_URL ?= postgresql+psycopg2://postgres@127.0.0.1:5432/test
ifdef ADAPTER_REGISTRY_TEST_PG
PG_ENV =
else
PG_ENV = $(shell pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null && echo ADAPTER_REGISTRY_TEST_PG=$(PG_URL))
endif

# The default suite, then the slow one (crash loops, parallel writers, real training); pytest exits
# 5 when no test is marked slow, which is not a failure.
test: install lint browser s3server
	$(PG_ENV) $(VENV)/bin/pytest -q
	$(PG_ENV) $(VENV)/bin/pytest -q -m 'slow and not gpu' || test $$? -eq 5

test-all: install lint browser s3server
	$(PG_ENV) $(VENV)/bin/pytest -q -m ''

# Mutation testing (mutmut, the `mutants` extra) over the artifact store, drift's decision, the
# promotion gate, the loader's fusion-manifest check and the fit loop's best-epoch bookkeeping:
# every mutant of registry/artifacts.py and of these functions, against the tests named in
# pyproject.toml's [tool.mutmut]. Prints the kill rate the README records (over an hour on 2
# loaded cores: the gate and fit mutants train the tiny model).
MUTANTS := 'registry.artifacts.*' 'registry.drift.x_detect_drift__mutmut_*' \
	'registry.drift_stats.x_mmd_permutation_test__mutmut_*' \
	'registry.drift_stats.x__mmd2_for_masks__mutmut_*' \
	'registry.drift_stats.x_label_shift_test__mutmut_*' 'registry.continual.gate.x_gate__mutmut_*' \
	'registry.fitting.xǁ_BestEpochǁ*' 'registry.loader.x__check_manifest__mutmut_*'

mutants: install
	$(PY) -m pip install -q torch==2.13.0 -e '.[dev,mutants]'
	rm -rf mutants
	# One torch thread: mutmut forks a process per mutant, and torch's OpenMP pool does not
	# survive a fork (every mutant that trains would hang until its timeout).
	OMP_NUM_THREADS=1 $(VENV)/bin/mutmut run --max-children 2 $(MUTANTS)
	$(VENV)/bin/mutmut export-cicd-stats
	$(PY) -c 'import json; s = json.load(open("mutants/mutmut-cicd-stats.json")); \
	c = s["killed"] + s["timeout"]; n = c + s["survived"] + s["no_tests"] + s["suspicious"]; \
	print(f"mutants: {c} of {n} caught ({100 * c / n:.1f}%); the survivors: mutmut results")'

DATA_ROOT ?= ../shared/data

demo: install
	$(PY) examples/demo.py --data-root $(DATA_ROOT)

bench: install
	$(PY) -m benchmarks.run

bench-quick: install
	$(PY) -m benchmarks.run --quick

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache mutants
