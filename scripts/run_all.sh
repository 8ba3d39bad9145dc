#!/usr/bin/env bash
# Run the whole shop in the foreground: gunicorn, a Celery worker and beat.
# Ctrl-C stops all three.
set -euo pipefail
cd "$(dirname "$0")/.."
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
WEB_WORKERS=${WEB_WORKERS:-2}

pids=()
stop() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap stop EXIT INT TERM

.venv/bin/gunicorn cardshop.wsgi:application --bind "$HOST:$PORT" --workers "$WEB_WORKERS" \
  --access-logfile - --graceful-timeout 10 &
pids+=($!)
celery_worker/worker.sh &
pids+=($!)
celery_worker/beat.sh &
pids+=($!)

echo
echo "cardshop is running:"
echo "  storefront  http://$HOST:$PORT/"
echo "  admin       http://$HOST:$PORT/admin/  (credentials printed by seed_demo above)"
echo "Ctrl-C stops it."
wait -n "${pids[@]}"
