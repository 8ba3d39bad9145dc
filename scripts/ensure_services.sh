#!/usr/bin/env bash
# Reach MariaDB and Redis on their local addresses, starting them when they are
# installed but down. Says exactly what is missing when it cannot.
set -uo pipefail

MARIADB_HOST=${MARIADB_HOST:-127.0.0.1}
MARIADB_PORT=${MARIADB_PORT:-3306}
REDIS_HOST=${REDIS_HOST:-127.0.0.1}
REDIS_PORT=${REDIS_PORT:-6379}

mariadb_up() { mariadb-admin -h "$MARIADB_HOST" -P "$MARIADB_PORT" -uroot --connect-timeout=2 ping >/dev/null 2>&1; }
redis_up() { redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; }

wait_for() { # name, check function
  for _ in $(seq 1 30); do "$2" && return 0; sleep 1; done
  return 1
}

if ! mariadb_up; then
  if [ -x /usr/sbin/mariadbd ] && [ "$MARIADB_HOST" = 127.0.0.1 ]; then
    echo "MariaDB is down; starting it."
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
    wait_for MariaDB mariadb_up || { echo "MariaDB did not come up on $MARIADB_HOST:$MARIADB_PORT; see its error log." >&2; exit 1; }
  else
    echo "MariaDB is not reachable on $MARIADB_HOST:$MARIADB_PORT. Install it (apt-get install mariadb-server) or set DATABASE_URL." >&2
    exit 1
  fi
fi

if ! redis_up; then
  if command -v redis-server >/dev/null 2>&1 && [ "$REDIS_HOST" = 127.0.0.1 ]; then
    echo "Redis is down; starting it."
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" --save "" --appendonly no \
      --maxmemory-policy noeviction --dir /var/lib/redis --logfile /var/log/redis/ci.log
    wait_for Redis redis_up || { echo "Redis did not come up on $REDIS_HOST:$REDIS_PORT." >&2; exit 1; }
  else
    echo "Redis is not reachable on $REDIS_HOST:$REDIS_PORT. Install it (apt-get install redis-server) or set REDIS_URL." >&2
    exit 1
  fi
fi

# An evicted stock counter would be an oversell (design.md, Redis layout).
policy=$(redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" config get maxmemory-policy 2>/dev/null | tail -1)
if [ -n "$policy" ] && [ "$policy" != noeviction ]; then
  redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" config set maxmemory-policy noeviction >/dev/null 2>&1 \
    || echo "warning: Redis maxmemory-policy is $policy; cardshop needs noeviction." >&2
fi
echo "MariaDB and Redis are reachable."
