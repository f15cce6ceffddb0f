# The two commands: `make train` (main job) and `make test` (tests). Both set up .venv first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXPERIMENT ?= cpu_quick
# Data: $TOONCLIP_DATA, else data/comics-heroes, else a copy beside the repo (../shared/...).
DATA ?= $(or $(TOONCLIP_DATA),$(patsubst %/ffhq,%,$(firstword $(wildcard data/comics-heroes/ffhq ../shared/data/comics-heroes/ffhq))),data/comics-heroes)
ARGS ?=

.PHONY: train test setup lint format smoke notebooks bench-train browser clean-runs

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[all]'
	touch $@

setup: $(BIN)/.installed

train: setup
	@test -d "$(DATA)/ffhq" || $(BIN)/toonclip data fetch dest="$(DATA)"
	$(BIN)/toonclip train experiment=$(EXPERIMENT) data.root="$(abspath $(DATA))" $(ARGS)

test: setup
	$(BIN)/pytest $(ARGS)

lint: setup
	$(BIN)/ruff check toonclip tests notebooks
	$(BIN)/ruff format --check toonclip tests notebooks

format: setup
	$(BIN)/ruff format toonclip tests notebooks
	$(BIN)/ruff check --fix toonclip tests notebooks

# A few steps at 64 px on real data; checks the run folder (CI runs this after the tests).
smoke: setup
	rm -rf /tmp/toonclip-smoke
	$(BIN)/toonclip train experiment=smoke data.root="$(abspath $(DATA))" run_dir=/tmp/toonclip-smoke
	$(BIN)/python scripts/check_run.py /tmp/toonclip-smoke

# Executes every notebook tiny (papermill, parameters from each notebook's tagged cell).
notebooks: setup
	$(BIN)/python scripts/run_notebooks.py --data "$(abspath $(DATA))"

bench-train: setup
	$(BIN)/toonclip bench-train data.root="$(abspath $(DATA))" $(ARGS)

# Debian's Chromium for the browser tests (skipped, with a reason, when it is absent).
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium) || echo "chromium not installed: browser tests will be skipped"

clean-runs:
	rm -rf experiments/runs experiments/sweeps
