# crossdock: two commands for a fresh machine — `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
PIP_FLAGS ?= --quiet --disable-pip-version-check
DEMO_PORT ?= 8000
DEMO_TOKEN ?=
PYTEST_ARGS ?=

.PHONY: demo test lint typecheck pytest install install-dev lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install $(PIP_FLAGS) --upgrade pip

# Installs are stamped so repeated runs are instant; a change to pyproject.toml or the lock reinstalls.
$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) install $(PIP_FLAGS) -c constraints.txt -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install $(PIP_FLAGS) -c constraints.txt -e '.[dev]'
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: $(VENV)/.installed
	DEMO_PORT=$(DEMO_PORT) DEMO_TOKEN=$(DEMO_TOKEN) $(BIN)/crossdock demo

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

pytest: $(VENV)/.installed-dev
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck pytest

# Refresh the lock from what is installed in the dev environment.
lock: $(VENV)/.installed-dev
	$(PIP) freeze --exclude-editable | grep -v '^crossdock' > constraints.txt

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
