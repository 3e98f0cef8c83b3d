# The two commands a newcomer needs: `make demo` and `make test`. Both set up .venv themselves.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: install test lint typecheck pytest demo bench schema clean

$(INSTALLED): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip "setuptools>=68" wheel
	$(BIN)/python -m pip install --quiet -e ".[dev]"
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

demo: $(INSTALLED)
	$(BIN)/python -m airflow_mlpipe.demo

bench: $(INSTALLED)
	$(BIN)/python -m pip install --quiet -e ".[dev,bench]"
	$(BIN)/python benchmarks/validate_spec.py --quick
	$(BIN)/python benchmarks/parse_dags.py --quick
	$(BIN)/python benchmarks/stage_overhead.py --quick
	$(BIN)/python benchmarks/extract_postgres.py --quick
	$(BIN)/python benchmarks/train_evaluate.py --quick

schema: $(INSTALLED)
	$(BIN)/mlpipe schema --output schema/pipeline.schema.json

clean:
	rm -rf .demo build *.egg-info
