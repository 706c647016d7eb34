# Two commands from a fresh clone: `make run` (the daemon, on the embedded SQLite default)
# and `make test`. Only python3 (with venv) and make are needed; the rest goes into .venv.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install run test lint typecheck check example clean

$(BIN)/notifier: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/notifier

run: install
	$(BIN)/notifier run

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff format --check notifier tests bench
	$(BIN)/ruff check notifier tests bench

typecheck: install
	$(BIN)/mypy

check: lint typecheck test

example: install
	$(BIN)/notifier config example > config.example.env

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
