# sporeprint — `make help` lists the targets. Everything installs itself into .venv.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
GBIF_SAMPLE ?= data/samples/gbif/multimedia_psilocybe_semilanceata.txt
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install lock browser test test-unit test-e2e lint typecheck schema demo down bench bench-import \
	bench-harvest bench-curate bench-input bench-serve bench-openset bench-recipe clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

# The exact versions and their hashes come from requirements/dev.lock (make lock writes it from pyproject.toml);
# sporeprint itself is installed editable on top, without resolving anything again. A plain `pip install -r`, so
# the machine's own pip settings (a mirror, find-links) still apply; the hashes refuse any file not locked.
$(STAMP): pyproject.toml requirements/dev.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements/dev.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP) ## create .venv and install sporeprint with every extra, at the versions of requirements/dev.lock

lock: $(STAMP) ## regenerate requirements/*.lock (make install, the images) from pyproject.toml; needs PyPI
	$(BIN)/python requirements/lock.py

browser: ## install Debian's chromium for the browser tests (as root, if missing)
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium missing: sudo apt-get install chromium (browser tests will say why they skip)"; fi; }

test: $(STAMP) browser ## run the whole test suite (starts and stops its own S3 server, Redis, services)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-unit: $(STAMP) ## unit tests only (no servers)
	$(BIN)/python -m pytest tests/unit -m "not ml" $(PYTEST_ARGS)

test-e2e: $(STAMP) ## integration and end-to-end tests against the real local stack
	$(BIN)/python -m pytest tests/e2e tests/contract $(PYTEST_ARGS)

lint: $(STAMP) ## ruff
	$(BIN)/ruff check .

typecheck: $(STAMP) ## mypy
	$(BIN)/mypy

schema: $(STAMP) ## regenerate shared/jsonschema from the pydantic contract
	$(BIN)/sporeprint schema export

demo: $(STAMP) ## the main job: stack, fixture web, services; import, harvest, curate, train, promote, predict
	$(BIN)/sporeprint down
	$(BIN)/sporeprint demo --gbif-sample $(GBIF_SAMPLE)

down: ## stop everything `make demo` started (by PID)
	@if [ -x $(BIN)/sporeprint ]; then $(BIN)/sporeprint down; fi

bench: bench-import bench-harvest bench-curate bench-input bench-serve bench-openset bench-recipe ## run every benchmark; writes BENCHMARKS.md
	$(BIN)/python bench/report.py

bench-import: $(STAMP) ## 2.3M-row GBIF import: rows/s and peak RSS
	$(BIN)/python bench/import_gbif.py --rows 2300000

bench-harvest: $(STAMP) ## harvest: sequential vs img2dataset vs sporeprint (images/s, RSS)
	$(BIN)/pip install --quiet -e '.[bench]'
	NO_ALBUMENTATIONS_UPDATE=1 $(BIN)/python bench/harvest.py

bench-curate: $(STAMP) ## domain scores on 2.3M rows; stage-1 filter images/s
	$(BIN)/python bench/curate.py

bench-input: $(STAMP) ## tf.data input pipeline vs ImageDataGenerator vs decode-only ceiling
	$(BIN)/python bench/input.py

bench-serve: $(STAMP) ## /predict (with and without the relevance gate) vs a naive model.predict endpoint
	$(BIN)/python bench/serve.py

bench-openset: $(STAMP) ## relevance gate and open-set verdicts on real photos, own negatives and fixtures
	$(BIN)/python bench/openset.py

bench-recipe: $(STAMP) ## training-recipe ablation on the synthetic proxy: each switch off, top-1 and val loss
	$(BIN)/python bench/recipe.py

clean: down ## remove the venv, caches and local stack data
	rm -rf $(VENV) .stack .data .pytest_cache .mypy_cache .ruff_cache
