#!/usr/bin/env bash
# Run the whole shop in the foreground: gunicorn, a Celery worker and Celery beat.
# Ctrl-C (or a TERM to the process group) stops all three; if one of them dies,
# the others are stopped too, so a half-running shop never goes unnoticed.
set -euo pipefail
cd "$(dirname "$0")/.."
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
WEB_WORKERS=${WEB_WORKERS:-2}
PY=.venv/bin/python
export DJANGO_SETTINGS_MODULE=${DJANGO_SETTINGS_MODULE:-cardshop.settings.local}

# A default for this run unless the environment or .env already chose a value
# (an exported variable would override .env, which settings read last).
default_unless_configured() { # name value
  if [ -z "${!1+set}" ] && ! grep -qs "^$1=" .env; then export "$1=$2"; fi
}
# No nginx in front here, so gunicorn serves /static/ itself.
default_unless_configured SERVE_STATIC true
# Mails and payment callbacks must point at the port this run listens on.
default_unless_configured SITE_URL "http://$HOST:$PORT"

pids=()
stop() {
  trap - EXIT INT TERM
  kill "${pids[@]}" 2>/dev/null || true
  wait
}
trap stop EXIT
trap 'stop; exit 0' INT TERM

# Metrics (docs/metrics.md): gunicorn's workers add theirs up in one directory
# (emptied by gunicorn.conf.py at start), the Celery worker's processes in
# another, which the worker serves on its own port.
metrics_dir="$PWD/var/metrics/$PORT"
default_unless_configured WORKER_METRICS_PORT $((PORT + 1808))

# No control socket: its default path is per user, so two local runs would fight over it.
PROMETHEUS_MULTIPROC_DIR="$metrics_dir/web" .venv/bin/gunicorn cardshop.wsgi:application --bind "$HOST:$PORT" --workers "$WEB_WORKERS" \
  --access-logfile - --graceful-timeout 10 --no-control-socket &
pids+=($!)
# The node name carries the port, so two local runs (say a demo and a test run
# with its own REDIS_KEY_PREFIX) are told apart in Celery's logs and tools.
PROMETHEUS_MULTIPROC_DIR="$metrics_dir/worker" celery_worker/worker.sh --hostname "cardshop-$PORT@%h" &
pids+=($!)
CELERY_BEAT_SCHEDULE_FILE="var/celerybeat-schedule-$PORT" celery_worker/beat.sh &
pids+=($!)

# seed_demo (make seed) printed the demo admin's fresh password into this file.
credentials=$(grep -hE '^ *(Username|Password):' var/demo-admin-$PORT.txt 2>/dev/null | sed 's/^ */              /') \
  || credentials="              (demo credentials: run 'make seed' for a fresh admin password)"

# Print the addresses once the site answers, so they are not lost in start-up logs.
for _ in $(seq 1 30); do
  if "$PY" -c "import urllib.request; urllib.request.urlopen('http://$HOST:$PORT/healthz', timeout=1)" 2>/dev/null; then
    cat <<EOF

cardshop is running:
  storefront  http://$HOST:$PORT/
  admin       http://$HOST:$PORT/admin/
$credentials
  health      http://$HOST:$PORT/healthz  http://$HOST:$PORT/readyz
  metrics     http://$HOST:$PORT/metrics  (Celery worker: port ${WORKER_METRICS_PORT:-set in .env})
  live sales  http://$HOST:$PORT/admin/sales/
Ctrl-C stops it.

EOF
    break
  fi
  sleep 1
done

status=0
wait -n "${pids[@]}" || status=$?
echo "A cardshop process stopped (exit $status); stopping the others." >&2
exit "$status"
