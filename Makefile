# The two commands a newcomer needs: `make demo` and `make test`. Both set up .venv themselves.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: install test lint typecheck pytest test-pythons demo bench schema clean

$(INSTALLED): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip "setuptools>=68" wheel
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@# The MariaDB extract tests need the mysql extra, whose mysqlclient compiles against
	@# libmariadb-dev (and pkg-config); without them those tests skip, except under CI=true.
	$(BIN)/python -m pip install --quiet -e ".[dev,mysql]" || \
		echo "mysql extra not installed (install libmariadb-dev and pkg-config): the MariaDB tests will skip"
	touch $(INSTALLED)

install: $(INSTALLED)

test: lint typecheck pytest

lint: $(INSTALLED)
	$(BIN)/ruff check airflow_mlpipe tests dags plugins benchmarks
	$(BIN)/ruff format --check airflow_mlpipe

typecheck: $(INSTALLED)
	$(BIN)/mypy

pytest: $(INSTALLED)
	$(BIN)/pytest

# The other Pythons setup.cfg claims (.venv's own runs `make test`): each gets a fresh venv with
# a lean install (no extras), validates dags/pipelines and runs the tests below, which need no
# Airflow process. PYTHONS_TEST_DEPS: the dev extra's ranges for what those tests import.
PYTHONS ?= 3.10 3.12
PYTHONS_TESTS := tests/spec tests/test_resolver.py tests/components/test_contract.py tests/test_record.py \
	tests/components/test_extract_sqlite.py
PYTHONS_TEST_DEPS := pytest>=8,<10 hypothesis>=6.100,<7 numpy>=1.26,<3

test-pythons:
	PYTHONS_TESTS="$(PYTHONS_TESTS)" PYTHONS_TEST_DEPS="$(PYTHONS_TEST_DEPS)" bash ci/test-pythons.sh $(PYTHONS)

demo: $(INSTALLED)
	$(BIN)/python -m airflow_mlpipe.demo

bench: $(INSTALLED)
	$(BIN)/python -m pip install --quiet -e ".[dev,bench]"
	$(BIN)/python benchmarks/validate_spec.py --quick
	$(BIN)/python benchmarks/parse_dags.py --quick
	$(BIN)/python benchmarks/stage_overhead.py --quick
	$(BIN)/python benchmarks/extract_postgres.py --quick
	$(BIN)/python benchmarks/train_evaluate.py --quick
	$(BIN)/python benchmarks/recommenders.py --quick
	$(BIN)/python benchmarks/stage_cache.py --quick
	$(BIN)/python benchmarks/scale_footprint.py --quick
	$(BIN)/python benchmarks/scale.py --quick

schema: $(INSTALLED)
	$(BIN)/mlpipe schema --output schema/pipeline.schema.json

clean:
	rm -rf .demo build *.egg-info
