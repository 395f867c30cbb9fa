# make demo: a throwaway PostgreSQL, a backup to ./backups, list, restore, verify.
# make test: installs what the tests need (Debian and pip packages) and runs every test, on
#   TEST_WORKERS workers (pytest-xdist; most tests wait on PostgreSQL, S3 or a child process).
# make test-fast: lint, then the unit and storage-contract tests only (about 2 minutes): daily work.
# make docs: the docs site (mkdocs-material) into site/, --strict: a broken link fails it.
# make bench: the benchmark (bench/README.md); options through BENCH_ARGS="--gb 1.5 --rounds 5";
# the many-databases one (bench/many.py) through MANY_ARGS="--databases 50".
.PHONY: demo test test-fast deps deps-runtime deps-docs lint format docs bench image-test lock clean

VENV := .venv
TEST_WORKERS ?= 6
PY := $(VENV)/bin/python

deps-runtime:
	scripts/install-deps.sh runtime

deps:
	scripts/install-deps.sh test

deps-docs:
	scripts/install-deps.sh docs

demo: deps-runtime
	$(PY) scripts/demo.py

lint: deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

format: deps
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: lint
	$(VENV)/bin/pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist worksteal --durations=15

test-fast: lint
	$(VENV)/bin/pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist worksteal tests/unit tests/contract \
		tests/test_architecture_doc.py tests/test_layers.py

docs: deps-docs
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

bench: deps
	$(PY) bench/bench.py $(BENCH_ARGS)
	$(PY) bench/many.py $(MANY_ARGS)

lock:
	scripts/lock-deps.sh

image-test: deps
	scripts/image-test.sh

clean:
	rm -rf .venv backups site .pytest_cache .ruff_cache .hypothesis
