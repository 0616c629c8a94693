# Two commands do all set-up on a fresh clone: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
STAMP := $(VENV)/.installed

export DEBUG ?= 1

.PHONY: run test lint typecheck pytest bench bench-quick run-cluster clean test-client lowest-deps

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	touch $(STAMP)

run: $(STAMP)
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_demo
	@echo ""
	@echo "Gateway:   ws://$(HOST):$(PORT)/v1/ws   (token: POST http://$(HOST):$(PORT)/v1/auth/token)"
	@echo "Console:   http://$(HOST):$(PORT)/console/"
	@echo "Admin:     http://$(HOST):$(PORT)/admin/   (admin / demo-pass-123)"
	@echo "Layer:     $${REDIS_URL:-in-memory (one process)}   Database: $${DATABASE_URL:-SQLite db.sqlite3}   Server: $${GATEWAY_SERVER:-uvicorn}"
	@echo ""
	$(PY) -m realtime.serve --host $(HOST) --port $(PORT)

test: $(STAMP) lint typecheck pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy .

pytest: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) -m bench.run $(BENCH_ARGS)

bench-quick: $(STAMP)
	$(PY) -m bench.run --quick $(BENCH_ARGS)

# Two gateway processes on one Redis, for a local look at scale-out (ports 8001 and 8002).
run-cluster: $(STAMP)
	$(PY) -m tools.run_cluster --processes 2 --base-port 8001

clean:
	rm -rf $(VENV) db.sqlite3 staticfiles .pytest_cache .mypy_cache .ruff_cache tools/ts/node_modules

# The browser client: its TypeScript declarations (client.d.ts) checked by the pinned tsc against tools/ts/usage.ts,
# and its browser-free behaviour (once/off, typed errors) under node's test runner.
test-client:
	cd tools/ts && npm ci --no-audit --no-fund --silent && ./node_modules/.bin/tsc --noEmit -p tsconfig.json
	node --test tools/ts/client.test.mjs

# The dependency floors of pyproject.toml, installed at their lowest (a throw-away venv; needs PyPI).
lowest-deps:
	bash .ci/lowest-deps
