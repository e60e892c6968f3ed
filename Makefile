# Every target sets itself up: a fresh machine needs only Python 3.11+ and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
EXTRAS := ingest,process,glue-archive,query,local,infra,dev
STAMP  := $(VENV)/.installed

.PHONY: dev test lint bench loadtest lock tracker clean

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		-c requirements.lock -e '.[$(EXTRAS)]'
	touch $(STAMP)

dev: $(STAMP)
	$(BIN)/topup dev

lint: $(STAMP)
	$(BIN)/ruff check services infra tests loadtest
	$(BIN)/ruff format --check services infra tests loadtest
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python -m loadtest.bench

# Locust against the local stack for a bounded time, then the reconciliation (loadtest/run.py).
LOADTEST_ARGS ?= --seconds 60 --users 20 --min-events-per-second 50
loadtest: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[loadtest]'
	$(BIN)/python -m loadtest.run $(LOADTEST_ARGS)

# Rebuild the committed tracker builds after editing services/ingest/tracker/script.src.js.
tracker:
	cd services/ingest/tracker && npm ci --no-audit --no-fund && node build.mjs

# Re-pin every transitive dependency after changing pyproject.toml.
lock:
	rm -rf /tmp/topup-lock && $(PYTHON) -m venv /tmp/topup-lock
	/tmp/topup-lock/bin/pip install --quiet --disable-pip-version-check '.[$(EXTRAS),loadtest]'
	/tmp/topup-lock/bin/pip freeze --exclude topup-analytics > requirements.lock

clean:
	rm -rf $(VENV) .topup .pytest_cache .mypy_cache .ruff_cache
