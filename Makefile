# Dalal: `make run` starts the stack, `make test` runs every test. Both bootstrap themselves.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
# tests run in parallel, a test file per worker at a time (most wait on real processes)
TEST_WORKERS ?= 2
TOOLS := .tools
UV_SYSTEM := $(shell command -v uv 2>/dev/null)
UV := $(if $(UV_SYSTEM),$(UV_SYSTEM),$(TOOLS)/bin/uv)
# uv must use this machine's Python, never download one
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := $(shell $(PYTHON) -c 'import sys; print(sys.executable)' 2>/dev/null)

.PHONY: help install run test test-fast lint format up down bench soak chaos clean

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(TOOLS)/bin/uv:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Dalal needs Python >= 3.11, found " + sys.version.split()[0]'
	@echo "installing uv into $(TOOLS)/ (no uv on PATH)"
	@$(PYTHON) -m venv $(TOOLS)
	@$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv

.venv/.synced: uv.lock pyproject.toml $(wildcard shared/pyproject.toml services/*/pyproject.toml) | $(if $(UV_SYSTEM),,$(TOOLS)/bin/uv)
	@# bytecode compiled once here: every service process (tests start hundreds) then skips
	@# compiling its imports, even where PYTHONDONTWRITEBYTECODE keeps Python from caching them
	$(UV) sync --frozen --compile-bytecode
	@.venv/bin/python -m compileall -q shared/src services/*/src > /dev/null
	@touch $@

install: .venv/.synced ## Install uv (if missing) and the workspace into .venv

run: install ## Start the whole stack on the embedded default (Redis, services) and print the URLs
	.venv/bin/dalal run

test: install ## Run every test (installs test tools such as docker-compose and promtool when missing)
	@bash scripts/install-test-tools.sh || true
	@.venv/bin/python -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not soak" $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests; that is a failure" >&2; exit 1; fi; \
	exit $$rc

test-fast: install ## The tests that start no server or process (no `slow`, no `integration`; about a minute)
	@.venv/bin/python -m pytest -n $(TEST_WORKERS) -m "not slow and not integration" $(PYTEST_ARGS)

lint: install ## ruff check and format check, import contracts (.importlinter), mypy (pyproject.toml)
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/lint-imports --no-cache
	.venv/bin/mypy

format: install ## Apply ruff fixes and formatting
	.venv/bin/ruff check --fix .
	.venv/bin/ruff format .

up: ## docker compose up (sim mode; needs Docker and a .env made from .env.example)
	docker compose --profile sim up --build

down: ## docker compose down
	docker compose --profile sim down

bench: install ## Run every benchmark in a quick mode (full runs and figures: bench/README.md)
	@# quick runs are smoke runs: a missed target is reported, not fatal (-), so all of them run
	-.venv/bin/python bench/bus.py --quick
	-.venv/bin/python bench/bus_cpu.py --messages 10000
	-.venv/bin/python bench/broker.py --quick
	-.venv/bin/python bench/journal_batch.py --quick
	-.venv/bin/python bench/kite_client.py --quick
	-.venv/bin/python bench/kitesim.py --quick
	-.venv/bin/python bench/kitesim_day.py --finished 2000
	-.venv/bin/python bench/portfolio.py --fills 300 --rates 200 --seconds 2 --warmup 1 --no-postgres
	-.venv/bin/python bench/data_cache.py --symbols 5 --ticks 5000
	-.venv/bin/python bench/backtest.py --repeat 1 --rounds 1
	-.venv/bin/python bench/backtest_cli.py --quick
	-.venv/bin/python bench/latency.py --quick
	-.venv/bin/python bench/latency_rates.py --quick
	-.venv/bin/python bench/engine_burst.py --minutes 120
	-.venv/bin/python bench/engine_burst.py --minutes 90 --history 19000 --gap 0.2
	-.venv/bin/python bench/wake_costs.py --repeats 10
	-.venv/bin/python bench/indicators_live.py --quick
	-.venv/bin/python bench/sweep.py --quick

soak: install ## Whole-stack scenarios at sim speed that take minutes (e.g. a GTT stop firing while the broker is down)
	.venv/bin/python -m pytest -m soak $(PYTEST_ARGS)

chaos: install ## Long chaos run of the order path (>= 100 SIGKILLs, Redis kills, Kite faults; ~30 min)
	.venv/bin/python scripts/chaos.py $(CHAOS_ARGS)

clean: ## Remove the venv, tools and local state under var/
	rm -rf .venv $(TOOLS) var .pytest_cache .ruff_cache
