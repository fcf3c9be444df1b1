# Two commands do all the set-up on a fresh machine:
#   make studio   — builds .venv, fetches the offline default model once, starts the web studio
#   make test     — builds .venv, runs lint, type checks and the test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup studio test lint typecheck unit bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e '.[dev,studio,eval,ray]'
	touch $(STAMP)

studio: setup
	$(VENV)/bin/dragkit studio --network default

lint: setup
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/ruff check src tests benchmarks

typecheck: setup
	$(VENV)/bin/mypy

unit: setup
	$(PY) -m pytest -q

test: lint typecheck unit

clean:
	rm -rf $(VENV) build dist src/*.egg-info
