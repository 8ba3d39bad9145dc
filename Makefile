# cardshop — two commands on a fresh machine:
#   make run    the shop (storefront, admin, workers) on http://127.0.0.1:8000
#   make test   the whole test suite against the real MariaDB and Redis
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
HOST ?= 127.0.0.1
PORT ?= 8000
WEB_WORKERS ?= 2
DB_NAME ?= cardshop
export DJANGO_SETTINGS_MODULE ?= cardshop.settings.local

.PHONY: run test system-deps venv services database migrate messages seed bench bench-import clean

run: system-deps venv services database messages
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput -v 0
	$(PY) manage.py seed_demo
	HOST=$(HOST) PORT=$(PORT) WEB_WORKERS=$(WEB_WORKERS) scripts/run_all.sh

test: system-deps venv services messages
	scripts/ensure_system_packages.sh --browser
	DJANGO_SETTINGS_MODULE=cardshop.settings.test $(PY) -m pytest $(PYTEST_ARGS)

system-deps:
	@scripts/ensure_system_packages.sh

# The virtualenv is rebuilt when the pins change.
venv: $(VENV)/.installed
$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements-dev.txt
	touch $@

services:
	@scripts/ensure_services.sh

database:
	mariadb -h 127.0.0.1 -uroot -e "CREATE DATABASE IF NOT EXISTS \`$(DB_NAME)\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"

# Compiled translations are built, not committed.
messages: venv
	$(PY) manage.py compilemessages -v 0 --ignore '.venv/*'

seed: venv
	$(PY) manage.py seed_demo

bench-import: venv services
	$(PY) bench/import_keys.py

clean:
	rm -rf $(VENV) var .pytest_cache
	find . -name '__pycache__' -prune -exec rm -rf {} +
