# Quick start: `make run` opens the console on a live demo; `make test` runs the whole suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: run test test-parallel lint bench install clean screenshot lock

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# requirements.lock pins every package (direct and transitive) for reproducible installs; pyproject.toml
# keeps the ranges govcon supports
$(VENV)/.installed: pyproject.toml requirements.lock | $(BIN)/python
	$(BIN)/python -m pip install -q -c requirements.lock -e '.[test]'
	touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/govcon demo

test: install
	$(BIN)/python -m pytest -q

# ruff: pyflakes, pycodestyle, isort, bugbear, pyupgrade (config in pyproject.toml); import-linter: the
# layer contracts in .importlinter. .ci/run runs both before the tests
# the suite on two workers (pytest-xdist; tests that share a fixed port are grouped): ~650 s against
# ~920 s serially on the 2-core CI machine, but the safety lanes' 1.5 s deadlines then meet more load
test-parallel: install
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup

lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache

bench: install
	$(BIN)/python -m pytest -q -s tests/bench

# rewrite requirements.lock from the venv after a dependency change (pip install -e '.[test]' first)
lock: install
	{ sed -n '1,2p' requirements.lock; $(BIN)/python -m pip freeze --exclude-editable; } > requirements.lock.new
	mv requirements.lock.new requirements.lock

clean:
	rm -rf $(VENV) build *.egg-info

# docs/screenshot.svg (the README's picture of the console), exported from the app itself on a seeded store
screenshot: install
	$(BIN)/python tools/screenshot.py
