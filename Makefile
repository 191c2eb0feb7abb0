# Two commands do all set-up on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
HOST ?= 127.0.0.1
export CHAT_DATA_DIR ?= data

GATEWAYS ?= 3
BROKER ?= redis
REDIS ?= single  # or cluster: a local 3-primary/3-replica Redis Cluster
PERSIST ?= async
STACK_PORT ?= 8080
MONITORING ?= 0  # 1: `make stack` also runs Prometheus (alert rules loaded) on PROMETHEUS_PORT
PROMETHEUS_PORT ?= 9090
# `make bench`: every BENCH_* variable is passed through (see bench/settings.py), e.g.
# BENCH_QUICK=1 (about 2 minutes), BENCH_DURATION_S, BENCH_USERS, BENCH_RATE, BENCH_PEAK_RATES.
BENCH_QUICK ?= 0
export BENCH_QUICK

# A bare `make` lists the targets.
.DEFAULT_GOAL := help
.PHONY: help venv run migrate stack up down token bench bench-persister soak chaos system-deps lint unit test clean

help: ## this list: every target and what it does
	@awk -F ':.*## ' '/^[a-zA-Z][a-zA-Z0-9_-]*:.*## / { printf "  %-16s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed ## create .venv with everything (idempotent)

run: venv ## the embedded single-process server on http://$(HOST):$(PORT)
	CHAT_HOST=$(HOST) CHAT_PORT=$(PORT) $(PY) -m embedded

# `make migrate CHAT_DATABASE_URL='mysql+pymysql://user:pw@host/chat'`; without it, the embedded
# SQLite file in CHAT_DATA_DIR. Creates a missing MySQL database when the account may.
migrate: venv ## bring the database schema to the newest migration (CHAT_DATABASE_URL, else SQLite)
	$(PY) -m persister migrate

stack: venv system-deps ## native topology: redis, mariadb, persister, $(GATEWAYS) gateways, nginx on $(STACK_PORT) (MONITORING=1: + Prometheus)
	$(PY) -m stack --gateways $(GATEWAYS) --broker $(BROKER) --redis $(REDIS) --persist $(PERSIST) --port $(STACK_PORT) \
	  $(if $(filter 1,$(strip $(MONITORING))),--monitoring --prometheus-port $(PROMETHEUS_PORT))

up: ## the same topology with Docker (needs a Docker engine and a .env, see .env.example)
	docker compose up -d --build --scale gateway=$(GATEWAYS)

down: ## stop the Docker topology (docker compose down)
	docker compose down

token: venv ## a token for local testing: make token NAME=alice [ROOMS='team-*'] (needs CHAT_AUTH_SECRET)
	$(PY) -m gateway.mint $(NAME) $(if $(ROOMS),--rooms '$(ROOMS)')

bench: venv system-deps ## experiments 1-7 on the native stack -> bench/results/<timestamp>/report.md
	$(PY) -m bench.run

bench-persister: venv system-deps ## rows/s into MariaDB: persister batches (200, 1000) vs one commit per message
	$(PY) -m bench.persister

# `make soak`: every SOAK_* variable is passed through (see bench/soak.py), e.g. SOAK_SECONDS (120),
# SOAK_USERS (300), SOAK_RATE (50 msgs/s), SOAK_CHURN_PER_S (20). Not part of `make test`.
soak: venv system-deps ## leak hunt: steady load + connection churn -> bench/results/soak-<timestamp>.md
	$(foreach v,$(filter SOAK_%,$(.VARIABLES)),$(v)='$($(v))') $(PY) -m bench.soak

# `make chaos`: every CHAOS_* variable is passed through (see bench/chaos/settings.py), e.g.
# CHAOS_SECONDS (300), CHAOS_SEED, CHAOS_FAULTS=gateway,redis; REDIS=cluster (or CHAOS_REDIS)
# for a Redis Cluster. Not part of `make test`; docs/chaos.md tells how to read the report.
chaos: venv system-deps ## faults under traffic (seeded), then no loss/duplicate/reused seq -> bench/results/chaos-<timestamp>.md
	CHAOS_REDIS='$(strip $(REDIS))' $(foreach v,$(filter CHAOS_%,$(.VARIABLES)),$(v)='$($(v))') $(PY) -m bench.chaos

system-deps: ## system packages the tests need (apt, only where missing)
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v mariadbd >/dev/null || missing="$$missing mariadb-server"; \
	command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing="$$missing nginx"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v prometheus >/dev/null || missing="$$missing prometheus"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

lint: venv ## ruff and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

unit: venv ## the unit tests only (tests/unit)
	$(PY) -m pytest tests/unit -q

test: venv system-deps lint ## everything CI runs
	$(PY) -m pytest -q

clean: ## remove .venv, caches, test artifacts and the native stack's work folder (.stack)
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache test-artifacts .stack
