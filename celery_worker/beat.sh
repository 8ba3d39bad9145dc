#!/usr/bin/env bash
# Start Celery beat for cardshop (exactly one per deployment).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p var
# The log level is WORKER_LOG_LEVEL (else LOG_LEVEL), as for the worker (worker.sh).
exec "${PYTHON:-.venv/bin/python}" -m celery -A cardshop beat \
  --schedule "${CELERY_BEAT_SCHEDULE_FILE:-var/celerybeat-schedule}" \
  "$@"
