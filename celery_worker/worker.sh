#!/usr/bin/env bash
# Start a Celery worker for cardshop. Extra arguments are passed to celery.
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-.venv/bin/python}" -m celery -A cardshop worker \
  --loglevel "${CELERY_LOG_LEVEL:-INFO}" \
  --concurrency "${CELERY_CONCURRENCY:-2}" \
  "$@"
