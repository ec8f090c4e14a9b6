# Quick start:  make demo   |   make test
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: help install gen lock check test test-sqlite test-shifted fuzz demo bench clean

help:
	@echo "make demo         create the environment, run a node with two schools, show transfers"
	@echo "make test         generated-code check, ruff, mypy, the suite on SQLite and PostgreSQL"
	@echo "make test-sqlite  the suite on SQLite only (no PostgreSQL needed)"
	@echo "make test-shifted DAYS=N   the SQLite suite with the wall clock N days ahead (or SHIFT_TO=2028-02-29T09:00:00Z)"
	@echo "make fuzz         a longer fuzz of every RPC on SQLite (FUZZ_EXAMPLES=2000; make test runs 60)"
	@echo "make gen          regenerate transfer/v1 from proto/"
	@echo "make lock         regenerate the image's hash locks (requirements/*.lock) from constraints.txt"
	@echo "make bench        the standard benchmark set (about 10 minutes; bench/results/latest.md)"

# The environment: a virtualenv with the project and its pinned tools.
$(BIN)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[server,dev]'
	touch $@

install: $(BIN)/.installed

gen: install
	$(BIN)/python scripts/gen_protos.py

lock:
	scripts/lock-requirements.sh

check: install
	$(BIN)/python scripts/gen_protos.py --check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# make test also runs the SQLite suite with the clock more than a year ahead, so a
# test that depends on today's date fails today, not on some later day.
SHIFTED_DAYS ?= 400

test: check
	scripts/run-tests.sh
	scripts/test-shifted.sh $(SHIFTED_DAYS) -q

FUZZ_EXAMPLES ?= 2000
fuzz: install
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest tests/test_fuzz.py -k "not postgresql"

DAYS ?= 400
test-shifted: install
	scripts/test-shifted.sh $(DAYS)

test-sqlite: install
	$(BIN)/pytest -k "not postgresql"

demo: install
	$(BIN)/python -m transfer.demo

bench: install
	scripts/run-bench.sh

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
