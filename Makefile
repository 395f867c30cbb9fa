# make demo: a throwaway PostgreSQL, a backup to ./backups, list, restore, verify.
# make test: installs what the tests need (Debian and pip packages) and runs every test, on
#   TEST_WORKERS workers (pytest-xdist; most tests wait on PostgreSQL, S3 or a child process).
# make test-fast: lint, then the unit and storage-contract tests not marked slow (under a minute): daily work.
# make docs: the docs site (mkdocs-material) into site/, --strict: a broken link fails it.
# make bench: the benchmark (bench/README.md); options through BENCH_ARGS="--gb 1.5 --rounds 5";
# the many-databases one (bench/many.py) through MANY_ARGS="--databases 50".
# make sandbox: the demo, then its PostgreSQL and ./backups stay, with the exports to use them.
# make help: every target, one line each (the text after "## " on its line).
.PHONY: demo test test-fast deps deps-runtime deps-docs lint format docs bench image-test lock clean
.PHONY: help sandbox sandbox-stop bench-tables
.DEFAULT_GOAL := help

VENV := .venv
TEST_WORKERS ?= 6
PY := $(VENV)/bin/python

deps-runtime: ## install what make demo needs (Debian packages, .venv with the project)
	scripts/install-deps.sh runtime

deps: ## install what make test needs (Debian packages, .venv with the test tools)
	scripts/install-deps.sh test

deps-docs: ## install what make docs needs (.venv with mkdocs-material)
	scripts/install-deps.sh docs

demo: deps-runtime ## a throwaway PostgreSQL backed up to ./backups, restored, verified
	$(PY) scripts/demo.py

lint: deps ## ruff check, ruff format --check, import-linter's layers
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

format: deps ## ruff format and ruff check --fix
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: lint ## lint, then every test (about 8 minutes on 2 cores)
	$(VENV)/bin/pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist worksteal --durations=15

test-fast: lint ## lint, then the unit and storage-contract tests not marked slow (under a minute)
	PGBACKUP_TEST_FAST=1 $(VENV)/bin/pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist worksteal -m 'not slow' tests/unit tests/contract \
		tests/test_architecture_doc.py tests/test_layers.py

docs: deps-docs ## the docs site into site/ (mkdocs --strict)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

bench: deps ## the benchmark (bench/README.md; options: BENCH_ARGS=...)
	$(PY) bench/bench.py $(BENCH_ARGS)
	$(PY) bench/many.py $(MANY_ARGS)

bench-tables: deps ## one table out of a large backup against a full restore (bench/selective.py)
	$(PY) bench/selective.py $(BENCH_ARGS)

.PHONY: bench-packs
bench-packs: deps ## 3,000 small tables: directory format (packs) against custom (bench/packs.py)
	$(PY) bench/packs.py $(BENCH_ARGS)

lock: ## requirements.lock from pyproject.toml, hash-pinned
	scripts/lock-deps.sh

image-test: deps ## build the container image and run every command inside it
	scripts/image-test.sh

clean: ## remove .venv, backups, site and the caches
	rm -rf .venv backups site .pytest_cache .ruff_cache .hypothesis

sandbox: deps-runtime ## make demo, leaving its PostgreSQL and ./backups for your own commands
	$(PY) scripts/demo.py --sandbox

sandbox-stop: ## stop the PostgreSQL that make sandbox left running (the backups stay)
	$(PY) scripts/demo.py --stop

help: ## this list
	@awk -F ':.*## ' '/^[a-z][a-z-]*:.*## / { printf "  make %-13s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)
