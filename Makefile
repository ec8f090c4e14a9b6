# Quick start:  make demo   |   make test
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: help install gen check test test-sqlite demo bench clean

help:
	@echo "make demo         create the environment, run a node with two schools, show transfers"
	@echo "make test         generated-code check, ruff, mypy, the suite on SQLite and PostgreSQL"
	@echo "make test-sqlite  the suite on SQLite only (no PostgreSQL needed)"
	@echo "make gen          regenerate transfer/v1 from proto/"
	@echo "make bench        the standard benchmark set (about 10 minutes; bench/results/latest.md)"

# The environment: a virtualenv with the project and its pinned tools.
$(BIN)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

install: $(BIN)/.installed

gen: install
	$(BIN)/python scripts/gen_protos.py

check: install
	$(BIN)/python scripts/gen_protos.py --check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: check
	scripts/run-tests.sh

test-sqlite: install
	$(BIN)/pytest -k "not postgresql"

demo: install
	$(BIN)/python -m transfer.demo

bench: install
	scripts/run-bench.sh

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
