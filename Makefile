# crossdock: two commands for a fresh machine — `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
PIP_FLAGS ?= --quiet --disable-pip-version-check
DEMO_PORT ?= 8000
DEMO_TOKEN ?=
PYTEST_ARGS ?=

.PHONY: demo test lint typecheck pytest chromium install install-dev lock clean

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

# The panel's browser tests drive Debian's Chromium; as root with apt it is installed when missing, otherwise
# those tests skip and say how to install it.
chromium:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "Chromium is not installed: the panel's browser tests will skip (apt-get install -y chromium)"

pytest: $(VENV)/.installed-dev chromium
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck pytest

# Refresh the lock from what is installed in the dev environment.
lock: $(VENV)/.installed-dev
	$(PIP) freeze --exclude-editable | grep -v '^crossdock' > constraints.txt

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
