#!/usr/bin/env bash
# A MariaDB primary and GTID read replica of your own, for development
# (docs/database-replica.md): two private mariadbd processes in var/replica
# (REPLICA_DIR), on free ports of 127.0.0.1; the shared MariaDB is not touched.
#   scripts/replica.sh [start]   start the pair (or find the running one) and print the URLs to export
#   scripts/replica.sh status    the pair's URLs and process ids; exit 1 when it is not running
#   scripts/replica.sh stop      kill both servers and delete their data
# `make replica` / `make replica-stop` run it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DIR=${REPLICA_DIR:-var/replica}
action=${1:-start}
case "$action" in
  start | status | stop) ;;
  *) echo "usage: $0 [start|status|stop]" >&2; exit 2 ;;
esac
"$PY" -m testing.mariadb_pair "$action" --dir "$DIR"
if [ "$action" = start ]; then
  echo "# then: make migrate (with those two exported), and make run"
fi
