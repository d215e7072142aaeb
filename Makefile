# Handover: everything lives in .venv/ (tools and packages, from uv.lock) and .handover/ (state).
# Needs only Python 3.11 and make: uv itself is bootstrapped into .venv/ with pip.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
UV_VERSION := 0.13.9
SYNCED := $(VENV)/.synced

.PHONY: setup demo test lint up sandbox bench docs clean browser screenshots

$(BIN)/uv:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# Re-sync whenever the lock (or this file) changes; --frozen: install exactly uv.lock, never
# re-resolve. --compile-bytecode: the packages' bytecode is written once here, as pip does by
# default (uv does not): where PYTHONDONTWRITEBYTECODE is set, every process would otherwise
# compile Prefect and the rest again at each import (`import flows.offboard`: 4.4 s of CPU
# without, 2.2 s with; a Prefect server starts in 3.3 s instead of 6.2).
$(SYNCED): $(BIN)/uv uv.lock pyproject.toml Makefile
	UV_PROJECT_ENVIRONMENT=$(VENV) $(BIN)/uv sync --frozen --inexact --compile-bytecode --python $(BIN)/python
	@touch $(SYNCED)

setup: $(SYNCED)

# HANDOVER_SANDBOX=1: the explicit sandbox mode, the only one where the published development
# credentials and `--as` work (the commands set it for themselves too; said here so it shows).
# `make demo DEMO_ARGS=--interactive` leaves one approval for you to decide in the console.
DEMO_ARGS ?=
demo: setup
	HANDOVER_SANDBOX=1 $(BIN)/handover demo $(DEMO_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# The suite runs in parallel: one process per worker, each with its own Prefect server
# (tests/conftest.py), the long tests started first (tests/scheduling.py). 4 workers on the
# 2-core machines: many tests mostly wait (on a worker, a server, a retry), and a fourth worker
# runs others meanwhile (clean-clone runs: 10 min 47 s to 13 min 29 s at 91 to 95 % busy,
# against 12 to 13 min at about 80 % with three). What clean-clone runs took: docs/testing.md ("How long");
# `make test TEST_WORKERS=0` runs serially.
# Without PYTHONDONTWRITEBYTECODE: the suite's hundreds of processes (workers, CLI runs, servers)
# share our modules' bytecode and pytest keeps its rewritten test modules (collecting took 11.1 s
# of CPU per xdist worker without, 5.4 s with); both go to __pycache__/, which git ignores.
TEST_WORKERS ?= 4
test: lint docs browser
	env -u PYTHONDONTWRITEBYTECODE HANDOVER_SANDBOX=1 $(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal

# The console's browser tests drive Debian's Chromium through its chromedriver: installed here
# when missing and this may (root with apt-get); elsewhere those tests skip, saying why.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null \
	  || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	       && { apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 \
	            || { apt-get update -q >/dev/null 2>&1 \
	                 && apt-get install -y -q chromium chromium-driver >/dev/null 2>&1; }; } \
	       && echo "installed chromium and chromium-driver for the browser tests"; } \
	  || echo "no chromium: the console's browser tests will be skipped"

# The manual's pictures of the console (docs/img/), taken by its browser tests.
screenshots: setup browser
	HANDOVER_SANDBOX=1 HANDOVER_DOCS_SHOTS=1 $(BIN)/pytest tests/intake/console -n 0 -q -k browser

up: setup
	HANDOVER_SANDBOX=1 $(BIN)/handover up

sandbox: setup
	HANDOVER_SANDBOX=1 $(BIN)/handover sandbox up --seed demo

bench: setup
	$(BIN)/python bench/sandbox.py
	$(BIN)/python bench/offboard_bulk.py  # 200 leavers at 600/min and the baseline: ~15 min

# The manual (docs/, mkdocs.yml); any warning fails the build. NO_MKDOCS_2_WARNING silences
# the Material theme's end-of-life banner, which is about the theme, not about these docs.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir .handover/site

clean:
	rm -rf $(VENV) .handover
