#!/usr/bin/env bash
# Start a Celery worker for cardshop. Extra arguments are passed to celery.
set -euo pipefail
cd "$(dirname "$0")/.."
# The pool processes add up their metrics in this directory (apps.monitoring),
# served on WORKER_METRICS_PORT; a previous run's files would add to this one's.
if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
  mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
  find "$PROMETHEUS_MULTIPROC_DIR" -maxdepth 1 -name '*.db' -delete
fi
# The log level is WORKER_LOG_LEVEL (else LOG_LEVEL) from the settings, which
# apps.monitoring.celery_hooks applies; Celery's --loglevel would be ignored.
exec "${PYTHON:-.venv/bin/python}" -m celery -A cardshop worker \
  --concurrency "${CELERY_CONCURRENCY:-2}" \
  "$@"
