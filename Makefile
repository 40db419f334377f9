# cidx-auth: `make demo` and `make test` work on a fresh machine with python3 and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
# `make test-lowest`: a second venv holding the lowest version that pyproject.toml allows of
# every direct dependency (uv's lowest-direct resolution), to prove the declared floors work.
LOWEST     := .venv-lowest
LOWEST_BIN := $(LOWEST)/bin
LOWEST_STAMP := $(LOWEST)/.installed-stamp

.PHONY: install lint typecheck contracts unit test test-lowest demo bench stress clean redis

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

lint: install
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy --strict cidx_auth adapters

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
	$(BIN)/pytest -q -p no:cacheprovider --cov=cidx_auth --cov-branch \
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
	$(LOWEST_BIN)/pytest -q -p no:cacheprovider $(PYTEST_ARGS)

demo: install
	$(BIN)/cidx-auth demo

bench: install
	$(BIN)/python bench/run.py

stress: install
	CIDX_STRESS_TRIALS=3000 $(BIN)/pytest -q tests/integration -k kill $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(LOWEST) .coverage .mypy_cache .ruff_cache .pytest_cache .hypothesis
