# cidx-auth: `make demo` and `make test` work on a fresh machine with python3 and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
# pytest-xdist: the suite on every core (2 here); a test module stays on one worker, so its
# module-scoped server starts once.
WORKERS ?= auto
XDIST   := -n $(WORKERS) --dist loadscope
# `make test-lowest`: a second venv holding the lowest version that pyproject.toml allows of
# every direct dependency (uv's lowest-direct resolution), to prove the declared floors work.
LOWEST     := .venv-lowest
LOWEST_BIN := $(LOWEST)/bin
LOWEST_STAMP := $(LOWEST)/.installed-stamp

.PHONY: install lint typecheck contracts unit test test-lowest test-versions demo bench mutate stress soak clean redis

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

lint: install
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy --strict cidx_auth adapters refserver

contracts: install
	$(BIN)/lint-imports

unit: install
	$(BIN)/pytest tests/unit -q $(PYTEST_ARGS)

# The Redis tests start and stop their own redis-server on a free port: this only installs
# it. Without root (a developer's machine) the install fails quietly and they are skipped.
redis:
	@command -v redis-server >/dev/null 2>&1 || (apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null) || \
		echo "redis-server not installed: the Redis tests will be skipped (failed under CI)"

test: redis lint typecheck contracts
	$(BIN)/pytest -q -p no:cacheprovider $(XDIST) --cov=cidx_auth --cov-branch \
		--cov-report=term-missing:skip-covered --cov-fail-under=95 $(PYTEST_ARGS)

# Rebuilt from scratch whenever pyproject.toml changes: uv keeps an installed version that
# still satisfies a raised floor, so an old venv would not test the new floor.
$(LOWEST_STAMP): pyproject.toml $(STAMP)
	$(BIN)/python -m pip install --quiet 'uv>=0.5'
	rm -rf $(LOWEST)
	$(BIN)/uv venv --quiet --python $(BIN)/python $(LOWEST)
	VIRTUAL_ENV=$(CURDIR)/$(LOWEST) $(BIN)/uv pip install --quiet \
		--resolution lowest-direct -e '.[dev]'
	@touch $(LOWEST_STAMP)

test-lowest: redis $(LOWEST_STAMP)
	VIRTUAL_ENV=$(CURDIR)/$(LOWEST) $(BIN)/uv pip list | grep -iE \
		'^(httpx|cryptography|filelock|dependency-injector|click|rich|starlette|hypercorn|pyjwt|trustme|redis|keyring) '
	$(LOWEST_BIN)/pytest -q -p no:cacheprovider $(XDIST) $(PYTEST_ARGS)

# `make test-versions`: the suite (no coverage gate) on every Python that requires-python
# claims and this machine has, each in a venv of its own (.venv-3.12 ...), rebuilt from
# scratch when pyproject.toml changes. An interpreter counts when `pythonX.Y` runs from PATH
# or pyenv has it ($(PYENV_ROOT)/versions/X.Y.*); pyenv's shims for a version that is not
# selected do not run, so they do not count. VERSIONS="3.12 3.13" narrows the list.
VERSIONS   ?= 3.11 3.12 3.13
PYENV_ROOT ?= $(HOME)/.pyenv
python_for = $(firstword $(foreach candidate,python$(1) \
	$(wildcard $(PYENV_ROOT)/versions/$(1).*/bin/python$(1)),\
	$(if $(shell $(candidate) -c '' 2>/dev/null && echo yes),$(candidate))))
FOUND := $(foreach version,$(VERSIONS),$(if $(call python_for,$(version)),$(version)))

.venv-%/.installed-stamp: pyproject.toml $(STAMP)
	$(BIN)/python -m pip install --quiet 'uv>=0.5'
	rm -rf .venv-$*
	$(BIN)/uv venv --quiet --python $(call python_for,$*) .venv-$*
	VIRTUAL_ENV=$(CURDIR)/.venv-$* $(BIN)/uv pip install --quiet -e '.[dev]'
	@touch $@

test-versions: redis $(foreach version,$(FOUND),.venv-$(version)/.installed-stamp)
	@echo "Python versions found: $(or $(FOUND),none) (of $(VERSIONS))"
	@failed=""; for version in $(FOUND); do \
		echo "== Python $$version: $$(.venv-$$version/bin/python --version)"; \
		.venv-$$version/bin/pytest -q -p no:cacheprovider $(XDIST) $(PYTEST_ARGS) || \
			failed="$$failed $$version"; \
	done; \
	if [ -n "$$failed" ]; then echo "the suite failed on Python$$failed"; exit 1; fi

demo: install
	$(BIN)/cidx-auth demo

$(VENV)/.bench-stamp: pyproject.toml $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	@touch $@

bench: $(VENV)/.bench-stamp
	$(BIN)/python bench/run.py

# `make mutate`: mutation testing of the core (cidx_auth/domain and cidx_auth/service) and of
# the safety adapters with mutmut 3 (configuration in pyproject.toml), then the scores, the
# hand-written mutants, and the survivors (tests/mutation/report.py). A fresh run each
# time, so no verdict is stale; not part of test.
$(VENV)/.mutate-stamp: pyproject.toml $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,mutate]'
	@touch $@

mutate: $(VENV)/.mutate-stamp
	rm -rf mutants
	$(BIN)/mutmut run
	$(BIN)/python -m tests.mutation.report

stress: install
	CIDX_STRESS_TRIALS=3000 $(BIN)/pytest -q tests/integration -k kill $(PYTEST_ARGS)

# `make soak`: the chaos run (tests/soak, README "Set up"): SOAK_SECONDS of three hosts
# sharing one identity through Redis behind Sentinel and two file-store hosts, each with
# looping cidx-auth processes and a library worker, while every fault the client claims to
# survive is injected at random from SOAK_SEED (printed; a new one each run when unset).
# Fails on a replay, a call that failed while a valid path existed, or a traceback, and
# prints the command that runs the same plan again. Not part of test.
SOAK_SECONDS ?= 600
SOAK_SEED ?=

soak: redis install
	$(BIN)/python -m tests.soak --seconds $(SOAK_SECONDS) $(if $(SOAK_SEED),--seed $(SOAK_SEED))

clean:
	rm -rf $(VENV) $(LOWEST) .venv-3.* mutants .coverage .mypy_cache .ruff_cache .pytest_cache .hypothesis
