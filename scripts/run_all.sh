#!/usr/bin/env bash
# Run the whole shop in the foreground: gunicorn (or Granian, WEB_SERVER=granian),
# a Celery worker and Celery beat.
# Ctrl-C (or a TERM to the process group) stops all three. A worker or beat that
# exits is started again after a pause that doubles up to RESTART_MAX_SECONDS
# (paid orders must not wait for a person); if the web server dies, the others are
# stopped too, so a shop without its storefront never goes unnoticed.
set -euo pipefail
cd "$(dirname "$0")/.."
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
WEB_WORKERS=${WEB_WORKERS:-2}
# gunicorn (sync workers, as the image runs it) or granian (WEB_THREADS threads a worker).
WEB_SERVER=${WEB_SERVER:-gunicorn}
WEB_THREADS=${WEB_THREADS:-16}
case "$WEB_SERVER" in
  gunicorn | granian) ;;
  *) echo "WEB_SERVER=$WEB_SERVER: expected gunicorn or granian." >&2; exit 2 ;;
esac
PY=.venv/bin/python
export DJANGO_SETTINGS_MODULE=${DJANGO_SETTINGS_MODULE:-cardshop.settings.local}

# A default for this run unless the environment or .env already chose a value
# (an exported variable would override .env, which settings read last).
default_unless_configured() { # name value
  if [ -z "${!1+set}" ] && ! grep -qs "^$1=" .env; then export "$1=$2"; fi
}
# No nginx in front here, so the web server (the app) serves /static/ itself.
default_unless_configured SERVE_STATIC true
# Mails and payment callbacks must point at the port this run listens on.
default_unless_configured SITE_URL "http://$HOST:$PORT"
# An idle beat and worker would print several lines a second at INFO and push the
# addresses below out of sight: WARNING here, unless WORKER_LOG_LEVEL or LOG_LEVEL
# was chosen (WORKER_LOG_LEVEL=INFO make run shows every task).
if [ -z "${LOG_LEVEL+set}" ] && ! grep -qs "^LOG_LEVEL=" .env; then
  default_unless_configured WORKER_LOG_LEVEL WARNING
fi

pids=()
stop() {
  trap - EXIT INT TERM
  kill "${pids[@]}" 2>/dev/null || true
  wait
}
trap stop EXIT
trap 'stop; exit 0' INT TERM

# Runs a command again whenever it exits, after 1, 2, 4 ... RESTART_MAX_SECONDS
# seconds (back to 1 once it has run for a minute). A TERM stops the command
# and the loop.
RESTART_MAX_SECONDS=${RESTART_MAX_SECONDS:-30}
supervise() { # name command...
  local name=$1 child="" pause=1 started status
  shift
  trap '[ -n "$child" ] && kill -TERM "$child" 2>/dev/null; wait "$child" 2>/dev/null; exit 0' TERM INT
  while true; do
    started=$SECONDS
    "$@" &
    child=$!
    status=0
    wait "$child" || status=$?
    [ $((SECONDS - started)) -ge 60 ] && pause=1
    echo "The Celery $name stopped (exit $status); starting it again in ${pause}s." >&2
    sleep "$pause" &
    wait $! || true
    pause=$((pause * 2 > RESTART_MAX_SECONDS ? RESTART_MAX_SECONDS : pause * 2))
  done
}

# Metrics (docs/metrics.md): the web workers add theirs up in one directory
# (emptied at start by gunicorn.conf.py or scripts/granian_serve.py), the Celery worker's processes in
# another, which the worker serves on its own port.
metrics_dir="$PWD/var/metrics/$PORT"
default_unless_configured WORKER_METRICS_PORT $((PORT + 1808))

# WEB_SERVER=granian serves the shop with Granian (scripts/granian_serve.py, which
# empties the metrics directory and keeps tokens out of the access log as
# gunicorn.conf.py does); gunicorn is the default (docs/benchmarks.md, "Web
# server comparison"). No gunicorn control socket: its default path is per
# user, so two local runs would fight over it.
case "$WEB_SERVER" in
  gunicorn)
    PROMETHEUS_MULTIPROC_DIR="$metrics_dir/web" .venv/bin/gunicorn cardshop.wsgi:application --bind "$HOST:$PORT" \
      --workers "$WEB_WORKERS" --access-logfile - --graceful-timeout 10 --no-control-socket &
    ;;
  granian)
    PROMETHEUS_MULTIPROC_DIR="$metrics_dir/web" "$PY" scripts/granian_serve.py --host "$HOST" --port "$PORT" \
      --workers "$WEB_WORKERS" --threads "$WEB_THREADS" --access-log --graceful-timeout 10 &
    ;;
esac
pids+=($!)
# The node name carries the port, so two local runs (say a demo and a test run
# with its own REDIS_KEY_PREFIX) are told apart in Celery's logs and tools.
worker_node="cardshop-$PORT@%h"
PROMETHEUS_MULTIPROC_DIR="$metrics_dir/worker" supervise worker celery_worker/worker.sh --hostname "$worker_node" &
pids+=($!)
worker_pid=$!
CELERY_BEAT_SCHEDULE_FILE="var/celerybeat-schedule-$PORT" supervise beat celery_worker/beat.sh &
pids+=($!)
web_pid=${pids[0]}

# seed_demo (make seed) printed the demo admin's fresh password into this file.
credentials=$(grep -hE '^ *(Username|Password|用户名|密码):' var/demo-admin-$PORT.txt 2>/dev/null | sed 's/^ */              /') \
  || credentials="              (demo credentials: run 'make seed' for a fresh admin password)"

# The worker prints its banner (and, run as root, Celery's warning about it) as it
# starts: wait until it answers a ping, for at most 60 s, so that comes first.
worker_wait() {
  "$PY" - "$worker_node" "$worker_pid" <<'EOF'
import os, sys, time

import django

django.setup()
from celery.utils.nodenames import host_format

from cardshop.celery import app

node, pid = host_format(sys.argv[1]), int(sys.argv[2])
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit(1)
    if app.control.ping(destination=[node], timeout=1):
        sys.exit(0)
sys.exit(1)
EOF
}
worker_wait || echo "The Celery worker did not answer a ping; see its output above." >&2

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
wait "$web_pid" || status=$?
echo "$WEB_SERVER stopped (exit $status); stopping the others." >&2
exit "$status"
