#!/usr/bin/env bash
# Reach MariaDB, Redis and the Celery broker (RabbitMQ, or a Redis database on a
# laptop) where the settings point (DATABASE_URL, REDIS_URL, CELERY_BROKER_URL,
# from the environment or .env), starting local servers that are installed but
# down. Says exactly what is missing when it cannot.
set -uo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || { echo "No virtualenv at .venv: run 'make venv' first." >&2; exit 1; }
addresses=$("$PY" scripts/service_urls.py) || { echo "Could not read the settings (see the error above)." >&2; exit 1; }
eval "$addresses"

SUDO=""
[ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo"

fail() { echo "error: $*" >&2; exit 1; }
is_local() { case "$1" in 127.0.0.1 | localhost | ::1) return 0 ;; *) return 1 ;; esac; }
wait_for() { # check command and its arguments; up to 30 s
  for _ in $(seq 1 30); do "$@" && return 0; sleep 1; done
  return 1
}
has_init_script() { command -v service >/dev/null 2>&1 && [ -x "/etc/init.d/$1" ]; }

# --- MariaDB
# `ping` answers even when the login is refused: it tells "server up" apart from "login works".
mariadb_up() { mariadb-admin -h "$DB_HOST" -P "$DB_PORT" --connect-timeout=2 ping >/dev/null 2>&1; }
mariadb_login() {
  MYSQL_PWD="$DB_PASSWORD" mariadb -h "$DB_HOST" -P "$DB_PORT" -u "$DB_USER" --connect-timeout=2 -e "SELECT 1" >/dev/null 2>&1
}

start_mariadb() {
  echo "MariaDB is down on $DB_HOST:$DB_PORT; starting it."
  if has_init_script mariadb; then
    $SUDO service mariadb start >/dev/null 2>&1 && return 0
  fi
  # No init system (a container): start the daemon directly, as the mysql user.
  $SUDO mkdir -p /run/mysqld && $SUDO chown mysql:mysql /run/mysqld
  $SUDO start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
}

if ! command -v mariadb-admin >/dev/null 2>&1; then
  fail "the MariaDB client is not installed: run scripts/ensure_system_packages.sh (apt-get install mariadb-client)."
fi
if ! mariadb_up; then
  if ! is_local "$DB_HOST"; then
    fail "MariaDB is not reachable at $DB_HOST:$DB_PORT (DATABASE_URL). Start it there or point DATABASE_URL at a running server."
  fi
  [ -x /usr/sbin/mariadbd ] || fail "MariaDB is not installed: run scripts/ensure_system_packages.sh (apt-get install mariadb-server), or point DATABASE_URL at a running server."
  start_mariadb
  wait_for mariadb_up || fail "MariaDB did not come up on $DB_HOST:$DB_PORT; see /var/log/mysql/error.log or 'journalctl -u mariadb'."
fi

if ! mariadb_login; then
  # A fresh Debian MariaDB lets root in only through the unix socket. The local
  # default (DATABASE_URL=mysql://root:@127.0.0.1/...) needs a TCP login, so on a
  # machine where we are root we add one, keeping the socket login as it was.
  if [ "$DB_USER" = root ] && [ -z "$DB_PASSWORD" ] && is_local "$DB_HOST" && [ "$(id -u)" -eq 0 ] \
    && mariadb -uroot -e "SELECT 1" >/dev/null 2>&1; then
    echo "MariaDB refuses root over TCP; allowing root@localhost and root@127.0.0.1 to log in without a password (local development default)."
    mariadb -uroot -e "
      ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD('');
      CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
      GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
      FLUSH PRIVILEGES;" || fail "could not grant root a TCP login; set DATABASE_URL to an account that can log in."
    mariadb_login || fail "MariaDB still refuses $DB_USER@$DB_HOST:$DB_PORT; set DATABASE_URL to an account that can log in."
  else
    fail "MariaDB on $DB_HOST:$DB_PORT refuses user '$DB_USER' (DATABASE_URL). Set DATABASE_URL to an account that can log in and create the database '$DB_NAME'."
  fi
fi

# --- Redis (the gate and cache) and the Celery broker (a Redis database too)
redis_up() { redis-cli -u "$1" ping 2>/dev/null | grep -q PONG; }

start_redis() { # port
  echo "Redis is down on 127.0.0.1:$1; starting it."
  if [ "$1" = 6379 ] && has_init_script redis-server; then
    $SUDO service redis-server start >/dev/null 2>&1 && return 0
  fi
  # No init system: a plain server without persistence. Stock is rebuilt from
  # MariaDB by warm_stock (design.md P6), so nothing of record lives only here.
  $SUDO mkdir -p /var/lib/redis /var/log/redis
  $SUDO redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$1" --save "" --appendonly no \
    --maxmemory-policy noeviction --dir /var/lib/redis --logfile "/var/log/redis/cardshop-$1.log"
}

ensure_redis() { # what (REDIS_URL / CELERY_BROKER_URL), url, host, port
  local what=$1 url=$2 host=$3 port=$4
  redis_up "$url" && return 0
  is_local "$host" || fail "Redis is not reachable at $host:$port ($what). Start it there or fix $what."
  command -v redis-server >/dev/null 2>&1 \
    || fail "Redis is not installed: run scripts/ensure_system_packages.sh (apt-get install redis-server), or point $what at a running server."
  start_redis "$port"
  wait_for redis_up "$url" || fail "Redis did not come up on $host:$port ($what); see /var/log/redis/."
}

command -v redis-cli >/dev/null 2>&1 || fail "redis-cli is not installed: run scripts/ensure_system_packages.sh (apt-get install redis-tools)."
ensure_redis REDIS_URL "$REDIS_URL" "$REDIS_HOST" "$REDIS_PORT"
if [ "$BROKER_SCHEME" = redis ]; then
  ensure_redis CELERY_BROKER_URL "$BROKER_URL" "$BROKER_HOST" "$BROKER_PORT"
fi

# An evicted stock counter would be an oversell (design.md, Redis layout).
policy=$(redis-cli -u "$REDIS_URL" config get maxmemory-policy 2>/dev/null | tail -1)
if [ -n "$policy" ] && [ "$policy" != noeviction ]; then
  redis-cli -u "$REDIS_URL" config set maxmemory-policy noeviction >/dev/null 2>&1 \
    || echo "warning: Redis maxmemory-policy is $policy; cardshop needs noeviction (set it in redis.conf)." >&2
fi
# --- RabbitMQ, the production broker (amqp://)
# What an AMQP login to the broker says: ok, down (nothing answers), vhost (the
# virtual host is missing or the user may not use it), login (refused).
amqp_login() {
  BROKER_HOST=$BROKER_HOST BROKER_PORT=$BROKER_PORT BROKER_USER=$BROKER_USER BROKER_PASSWORD=$BROKER_PASSWORD \
    BROKER_VHOST=$BROKER_VHOST "$PY" - <<'EOF'
import os

import amqp

e = os.environ
connection = amqp.Connection(
    f"{e['BROKER_HOST']}:{e['BROKER_PORT']}", userid=e["BROKER_USER"], password=e["BROKER_PASSWORD"],
    virtual_host=e["BROKER_VHOST"], connect_timeout=2,
)
try:
    connection.connect()
    print("ok")
except amqp.exceptions.NotAllowed:
    print("vhost")
except amqp.exceptions.AccessRefused:
    print("login")
except Exception:
    print("down")
finally:
    try:
        connection.collect()
    except Exception:
        pass
EOF
}
rabbitmq_up() { [ "$(amqp_login)" != down ]; }

start_rabbitmq() {
  echo "RabbitMQ is down on $BROKER_HOST:$BROKER_PORT; starting it."
  if has_init_script rabbitmq-server; then
    $SUDO service rabbitmq-server start >/dev/null 2>&1 && return 0
  fi
  # No init system (a container): the Debian wrapper runs the node as the rabbitmq user.
  $SUDO rabbitmq-server -detached >/dev/null 2>&1
}

if [ "$BROKER_SCHEME" = amqp ] || [ "$BROKER_SCHEME" = pyamqp ]; then
  if ! rabbitmq_up; then
    is_local "$BROKER_HOST" \
      || fail "RabbitMQ is not reachable at $BROKER_HOST:$BROKER_PORT (CELERY_BROKER_URL). Start it there, or set CELERY_BROKER_URL=redis://127.0.0.1:6379/1 to use Redis as the broker (a laptop)."
    command -v rabbitmq-server >/dev/null 2>&1 || [ -x /usr/sbin/rabbitmq-server ] \
      || fail "RabbitMQ is not installed: run scripts/ensure_system_packages.sh (apt-get install rabbitmq-server), or set CELERY_BROKER_URL=redis://127.0.0.1:6379/1 to use Redis as the broker (a laptop)."
    start_rabbitmq
    for _ in $(seq 1 60); do rabbitmq_up && break; sleep 1; done
    rabbitmq_up || fail "RabbitMQ did not come up on $BROKER_HOST:$BROKER_PORT; see /var/log/rabbitmq/."
  fi
  case "$(amqp_login)" in
    ok) ;;
    vhost)
      # The local default is the guest user on "/", which a fresh server has;
      # another virtual host named in CELERY_BROKER_URL is made here when we may.
      if is_local "$BROKER_HOST" && command -v rabbitmqctl >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
        echo "RabbitMQ has no virtual host '$BROKER_VHOST' for $BROKER_USER; creating it."
        rabbitmqctl add_vhost "$BROKER_VHOST" >/dev/null 2>&1 || true
        rabbitmqctl set_permissions -p "$BROKER_VHOST" "$BROKER_USER" '.*' '.*' '.*' >/dev/null \
          || fail "could not give $BROKER_USER the virtual host '$BROKER_VHOST' (rabbitmqctl set_permissions)."
      else
        fail "RabbitMQ at $BROKER_HOST:$BROKER_PORT has no virtual host '$BROKER_VHOST' for user '$BROKER_USER' (CELERY_BROKER_URL): run rabbitmqctl add_vhost $BROKER_VHOST and rabbitmqctl set_permissions -p $BROKER_VHOST $BROKER_USER '.*' '.*' '.*' there."
      fi
      ;;
    login) fail "RabbitMQ at $BROKER_HOST:$BROKER_PORT refuses user '$BROKER_USER' (CELERY_BROKER_URL). Set CELERY_BROKER_URL to an account that can log in (rabbitmqctl add_user)." ;;
    *) fail "RabbitMQ at $BROKER_HOST:$BROKER_PORT stopped answering (CELERY_BROKER_URL)." ;;
  esac
  echo "MariaDB ($DB_HOST:$DB_PORT), Redis ($REDIS_HOST:$REDIS_PORT) and RabbitMQ ($BROKER_HOST:$BROKER_PORT) are reachable."
else
  echo "MariaDB ($DB_HOST:$DB_PORT) and Redis ($REDIS_HOST:$REDIS_PORT, also the broker) are reachable."
fi
