# Quick start: `make run` opens the console on a live demo; `make test` runs the whole suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: run test test-serial test-parallel lint bench install clean screenshot lock

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# requirements.lock pins every package (direct and transitive) for reproducible installs; pyproject.toml
# keeps the ranges govcon supports. compileall: the editable install leaves govcon's own modules uncompiled, and
# where PYTHONDONTWRITEBYTECODE is set every `govcon` process would compile them again (~0.15 s of CPU each)
$(VENV)/.installed: pyproject.toml requirements.lock | $(BIN)/python
	$(BIN)/python -m pip install -q -c requirements.lock -e '.[test]'
	$(BIN)/python -m compileall -q console engine screens storage
	touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/govcon demo

# the suite on TEST_WORKERS pytest-xdist workers. 3 on CI's 2 cores: with 2 the workers left 40 % of the CPU idle
# (waiting for servers, subprocesses, leases), and 3 took 11 min 10 s against 13 min 43 s, green, twice on a quiet
# machine (docs/performance.md, twelfth session); on a machine loaded by others, more workers bought nothing
# (ninth session). Each worker migrates one template store and copies it per test (tests/store_template.py).
# --dist loadgroup keeps the tests marked with one xdist_group on one worker (those that must not run beside
# each other); everything a test starts is its own: a free port per server, a tmux socket per worker, a tmp
# dir and a PostgreSQL schema per test. Each test is stopped after 600 s (pytest-timeout, pyproject.toml),
# so a hang fails instead of eating CI's budget. `make test-serial` runs it in one process (what a failure
# that only shows in parallel should be compared against). PYTEST_ARGS adds options: make test PYTEST_ARGS="-x tests/unit".
TEST_WORKERS ?= 3
PYTEST_ARGS  ?=
test: install
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

test-serial: install
	$(BIN)/python -m pytest -q -n 0 $(PYTEST_ARGS)

# kept for habit: `make test` is parallel now
test-parallel: test

# ruff: pyflakes, pycodestyle, isort, bugbear, pyupgrade (config in pyproject.toml); import-linter: the
# layer contracts in .importlinter. .ci/run runs both before the tests
# mypy over console/, engine/, screens/ and storage/ (config in pyproject.toml: engine/ and storage/ without untyped
# defs, the rest checked). Every module is clean: the ratchet list of the earlier sessions became plain `mypy`

lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy

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
