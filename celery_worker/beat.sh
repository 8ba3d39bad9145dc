#!/usr/bin/env bash
# Start Celery beat for cardshop (exactly one per deployment).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p var
exec "${PYTHON:-.venv/bin/python}" -m celery -A cardshop beat \
  --loglevel "${CELERY_LOG_LEVEL:-INFO}" \
  --schedule "${CELERY_BEAT_SCHEDULE_FILE:-var/celerybeat-schedule}" \
  "$@"
