# Ebbtide — `make help` lists every target.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
WITH_STACK := deploy/local/with-stack.sh
PYTEST_ARGS ?=
# pytest-xdist: the suite on 2 workers (the machine's cores; most tests wait on the servers). Tests
# sharing a costly fixture run on one worker (tests/conftest.py groups them). PYTEST_WORKERS=0: one
# process, as plain `pytest` runs.
PYTEST_WORKERS ?= 2
PYTEST_XDIST := $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadgroup)
SIZE ?= medium

.PHONY: help install tools stack-up stack-down stack-status demo test test-unit lint bench chaos clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@command -v pg_config >/dev/null || { echo "installing libpq-dev (psycopg2 builds against it)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libpq-dev; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[server,dev]'  # the worker and sinks (server), the dev tools
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install Ebbtide (client, worker and sinks) with its dev tools

tools: ## Debian tools the tests use (prometheus and promtool; chromium, which checks the audit export's report)
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || { echo "installing prometheus"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; }
	@command -v chromium >/dev/null || { echo "installing chromium"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; }

stack-up: ## start the local Kafka (KRaft), PostgreSQL, schema registry and Kafka Connect on 127.0.0.1
	deploy/local/stack.sh up

stack-down: ## stop the local stack (only what the project started)
	deploy/local/stack.sh down

stack-status: ## show whether the local stack is running
	deploy/local/stack.sh status

.PHONY: cluster-up cluster-down
cluster-up: ## start a local 3-broker KRaft cluster on 127.0.0.1 (deploy/local/kafka-cluster.sh --help)
	deploy/local/kafka-cluster.sh start

cluster-down: ## stop the local 3-broker cluster
	deploy/local/kafka-cluster.sh stop

demo: $(STAMP) ## run the scripted demo on the local stack and print the summary
	$(WITH_STACK) $(PY) -m ebbtide demo $(DEMO_ARGS)

# `make test` ends with a small chaos run (about 4 minutes); SKIP_CHAOS=1 leaves it out.
TEST_CHAOS_ARGS := --customers 40 --results $(CURDIR)/.state/chaos/results

test: $(STAMP) tools ## lint, the whole suite against the real servers, then a small chaos run (SKIP_CHAOS=1: not)
	$(MAKE) --no-print-directory lint
	EBBTIDE_STACK_CONNECT=1 $(WITH_STACK) $(PY) -m pytest $(PYTEST_XDIST) --durations=20 $(PYTEST_ARGS)  # the 20 slowest: CI time is a budget
	@if [ -z "$(SKIP_CHAOS)" ]; then $(MAKE) --no-print-directory chaos CHAOS_ARGS="$(TEST_CHAOS_ARGS)"; fi

test-unit: $(STAMP) ## only the unit tests (no servers)
	$(PY) -m pytest $(PYTEST_XDIST) -m unit $(PYTEST_ARGS)

bench: $(STAMP) ## benchmarks on the local stack, JSON in bench/results/ (SIZE=small|medium|large)
	$(WITH_STACK) $(PY) -m bench --size $(SIZE) $(BENCH_ARGS)

# The chaos run kills the broker and PostgreSQL: it gets a stack of its own (.state/chaos, other
# ports), started and stopped here, so a developer's stack is never touched.
CHAOS_STACK := EBBTIDE_STATE_DIR=$(CURDIR)/.state/chaos EBBTIDE_KAFKA_PORT=19092 \
	EBBTIDE_KAFKA_CONTROLLER_PORT=19093 EBBTIDE_KAFKA_SASL_PORT=19094 EBBTIDE_KAFKA_SASL_SSL_PORT=19095 \
	EBBTIDE_PG_PORT=15433 EBBTIDE_REGISTRY_PORT=18081 EBBTIDE_CONNECT_PORT=18083

chaos: $(STAMP) ## faults and hostile input on a stack of its own, judged by a ledger (JSON in chaos/results/)
	$(CHAOS_STACK) $(WITH_STACK) $(PY) -m chaos $(CHAOS_ARGS)

lint: $(STAMP) ## ruff, mypy, the direction of imports (lint-imports, contracts in pyproject.toml), the typed events up to date
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(PY) -m ebbtide.tools.generate_events --check  # ebbtide/client/events.py is what the schema gives

clean: ## remove the venv and caches (not .state: stop the stack first)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
