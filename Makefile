# voltledger: `make demo` and `make test` are the two commands; both install first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
TOOLS  := .tools
NPM_PKGS := @foundry-rs/anvil@1.7.1 ocpp-rpc@2.2.1

.PHONY: install demo test lint unit bench bench-quick clean

install: $(VENV)/.installed $(TOOLS)/.installed

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

$(TOOLS)/.installed: Makefile
	@command -v npm >/dev/null || { echo "npm is required for the anvil node and ocpp-rpc"; exit 1; }
	mkdir -p $(TOOLS)
	npm install --silent --no-audit --no-fund --prefix $(TOOLS) $(NPM_PKGS)
	@test -x $(TOOLS)/node_modules/.bin/anvil
	@touch $@

demo: install
	$(VENV)/bin/csms demo

lint: install
	$(VENV)/bin/ruff check csms settlement chargers_sim tests bench
	$(VENV)/bin/mypy

test: install lint
	$(PY) -m pytest -q -ra

unit: install
	$(PY) -m pytest -q tests/unit

bench: install
	$(PY) -m bench.all

bench-quick: install
	$(PY) -m bench.throughput --stations 200 --duration 20 --ocpp 1.6

clean:
	rm -rf $(VENV) $(TOOLS) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
