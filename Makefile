# cardshop — two commands on a fresh machine:
#   make run    the shop (storefront, admin, workers) on http://127.0.0.1:8000
#   make test   the whole test suite against the real MariaDB, Redis and RabbitMQ
# Configuration is environment variables (see .env.example); a .env file is read too.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
HOST ?= 127.0.0.1
PORT ?= 8000
WEB_WORKERS ?= 2
export DJANGO_SETTINGS_MODULE ?= cardshop.settings.local
# Links in mails, payment callbacks and seed_demo's output point at this run,
# unless the environment or .env chose SITE_URL.
ifeq ($(origin SITE_URL)$(shell grep -s '^SITE_URL=' .env),undefined)
run seed: export SITE_URL = http://$(HOST):$(PORT)
endif

.PHONY: run test lint format requirements pre-commit system-deps browser-deps container-deps image k8s-tools venv services database migrate messages static seed bench-import clean

run: system-deps venv services database migrate messages static seed
	HOST=$(HOST) PORT=$(PORT) WEB_WORKERS=$(WEB_WORKERS) scripts/run_all.sh

# The suite includes a smoke run of the benchmark's correctness gates, so it
# installs the bench tools too.
test: lint browser-deps container-deps venv bench-deps services messages k8s-tools
	DJANGO_SETTINGS_MODULE=cardshop.settings.test $(PY) -m pytest $(PYTEST_ARGS)

# ruff (pyproject.toml): lint rules and the formatter. A lint error fails `make test`.
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Rewrites the tree as the formatter wants it, and applies ruff's safe fixes.
format: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

system-deps:
	@scripts/ensure_system_packages.sh

# The pinned kubectl whose kustomize renders deploy/k8s (tests/test_k8s_manifests.py).
k8s-tools: venv
	@scripts/ensure_kubectl.sh >/dev/null

# The browser tests drive Debian's chromium.
browser-deps:
	@scripts/ensure_system_packages.sh --browser

# podman, runc and debootstrap: `make image`, and the suite's container test.
container-deps:
	@scripts/ensure_system_packages.sh --container

# The container image cardshop:local, built by podman (no Docker daemon): first a
# local stand-in for python:3.11-slim-bookworm from Debian's packages, as no image
# registry may be reachable (BASE=registry pulls the real one), then the Dockerfile.
image: container-deps
	scripts/build_image.sh

# The virtualenv is brought up to date when the pins change. requirements-dev.txt
# holds only the dev tools (within the runtime pins), so both files are installed.
venv: system-deps $(VENV)/.installed
$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements.txt -r requirements-dev.txt
	touch $@

# Recompiles the pinned requirements*.txt from the direct dependencies in
# requirements*.in (pip-tools), keeping every pin that still fits. Runtime first:
# dev and bench are compiled within the runtime (and dev) pins.
# COMPILE_ARGS="--upgrade-package celery" (or --upgrade) moves pins on purpose.
PIP_COMPILE = CUSTOM_COMPILE_COMMAND="make requirements" $(VENV)/bin/pip-compile -q --strip-extras \
	--no-emit-index-url --no-emit-find-links --no-emit-trusted-host --resolver=backtracking $(COMPILE_ARGS)
requirements: venv
	$(PIP_COMPILE) requirements.in
	$(PIP_COMPILE) requirements-dev.in
	$(PIP_COMPILE) requirements-bench.in

# Installs the git hook: each commit runs .pre-commit-config.yaml (ruff, hygiene) on its files.
pre-commit: venv
	$(VENV)/bin/pre-commit install

# MariaDB, Redis and RabbitMQ (or a Redis broker) where DATABASE_URL / REDIS_URL / CELERY_BROKER_URL point.
services: venv
	@scripts/ensure_services.sh

database: services
	$(PY) manage.py create_database

migrate: database
	$(PY) manage.py migrate --noinput

# Compiled translations are built, not committed.
messages: venv
	$(PY) manage.py compilemessages -v 0 --ignore '.venv/*'

static: venv
	$(PY) manage.py collectstatic --noinput -v 0

# seed_demo gives admin a fresh password each time; run_all.sh shows it again
# from var/demo-admin-$(PORT).txt (readable by this user only) once the shop is up.
seed: migrate
	@mkdir -p var
	set -o pipefail; umask 077; $(PY) manage.py seed_demo | tee var/demo-admin-$(PORT).txt

bench-import: venv services
	$(PY) bench/import_keys.py

clean:
	rm -rf $(VENV) var .pytest_cache
	find . -name '__pycache__' -prune -exec rm -rf {} +

# A MariaDB primary and GTID read replica of your own in var/replica
# (docs/database-replica.md): prints DATABASE_URL and DATABASE_REPLICA_URL to export.
.PHONY: replica replica-stop
replica: system-deps venv
	@scripts/replica.sh start

replica-stop:
	@scripts/replica.sh stop

# --- Benchmarks (docs/benchmarks.md). Each starts its own gunicorn, Celery
# worker and beat on its own database and Redis key prefix, and removes them.
.PHONY: bench bench-quick loadtest bench-deps

bench-deps: $(VENV)/.bench-installed
$(VENV)/.bench-installed: requirements-bench.txt $(VENV)/.installed
	$(PIP) install -q -r requirements-bench.txt
	touch $@

# The flash-sale benchmark: a few minutes; writes bench/results/latest.{json,md} and charts.
bench: system-deps bench-deps services
	$(PY) -m bench.flash_sale $(BENCH_ARGS)

# The same in under a minute (fewer, shorter rounds).
bench-quick: system-deps bench-deps services
	$(PY) -m bench.flash_sale --quick $(BENCH_ARGS)

# Locust, headless, bounded in users and time: bench/results/locust*.csv and locust.html.
loadtest: system-deps bench-deps services
	$(PY) -m bench.loadtest $(LOADTEST_ARGS)

# --- The chaos suite (docs/reliability.md): each fault struck at the real
# processes (gunicorn, Celery worker and beat, a private gate redis-server from
# deploy/redis/redis.conf) on their own database, Redis key prefix and RabbitMQ
# (a node of the run's own, which rabbitmq-restart restarts); invariants I1–I5 checked from SQL.
# CHAOS_ARGS="--faults worker-kill,redis-loss --orders 100"; writes chaos/results/latest.{md,json}.
.PHONY: chaos
chaos: system-deps bench-deps services
	$(PY) -m chaos $(CHAOS_ARGS)
