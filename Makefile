# fraudstream: main job `make demo`, tests `make test` (what CI runs via .ci/run).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(VENV)/bin
FS := $(BIN)/fraudstream
# Extra flags for the demo stack, e.g. make demo STACK_ARGS="--kafka-port 0 --redis-port 0"
STACK_ARGS ?=
# Extra pytest flags, e.g. make test PYTEST_ARGS='-m "not slow" -x'
PYTEST_ARGS ?=
LINT_PATHS := services tests $(if $(wildcard bench/*.py),bench)

.PHONY: help setup test lint stack-up stack-down stack-status demo demo-round-trip clean distclean

help:
	@echo "make setup        install Debian packages (when missing), .venv, the Kafka jars"
	@echo "make test         setup, then the whole test suite on a fresh local stack"
	@echo "make lint         ruff (check, format --check) + mypy"
	@echo "make demo         setup, then the whole system end to end (fraudstream demo)"
	@echo "make stack-up     start Kafka + Redis (.stack, ports 9092/6379; STACK_ARGS=...)"
	@echo "make stack-down   stop them"
	@echo "make clean        stop every stack under .stack, delete it and the caches"
	@echo "make distclean    clean, and delete .venv too"

setup:
	@bash scripts/setup.sh

test: setup
	bash scripts/test.sh $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy --explicit-package-bases $(LINT_PATHS)

stack-up: setup
	$(FS) stack up $(STACK_ARGS)

stack-down:
	$(FS) stack down $(STACK_ARGS)

stack-status:
	$(FS) stack status $(STACK_ARGS)

# The main job: `fraudstream demo` starts its own Kafka + Redis (demo/.stack, free ports),
# generates a data set with drift, trains a champion, runs the scorer and the monitor,
# replays the data with live progress, writes the backtest report (it prints where) and
# stops everything it started. Extra flags: make demo DEMO_ARGS="--days 30 --seed 3"
DEMO_ARGS ?=
demo: setup
	$(FS) demo $(DEMO_ARGS)

# The same round trip on three weeks of data: a quicker end-to-end check.
demo-round-trip: setup
	$(FS) demo --days 21 --workdir demo/round-trip $(DEMO_ARGS)

clean:
	@for state in $$(find .stack -name state.json 2>/dev/null); do \
		$(FS) stack down --stack-dir "$$(dirname "$$state")" || exit 1; \
	done
	rm -rf .stack .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) *.egg-info
