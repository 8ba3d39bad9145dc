#!/usr/bin/env bash
# Install the Debian packages cardshop needs, only those missing.
#   ensure_system_packages.sh            build + runtime packages, MariaDB, Redis and RabbitMQ
#   ensure_system_packages.sh --browser  also what only the tests drive: Chromium and a
#                                        Chinese font (browser tests), nginx (tests/test_nginx.py runs its own) and
#                                        prometheus (its promtool checks deploy/prometheus/alerts.yml)
#   ensure_system_packages.sh --container  also podman, Debian's runc and debootstrap: `make image`
#                                        builds the Dockerfile with them (scripts/build_image.sh), and
#                                        tests/test_container_image.py runs the image
# Both options may be given together.
set -euo pipefail

# python3-venv: .venv; pkg-config, libmariadb-dev, gcc, python3-dev: build mysqlclient;
# gettext: compilemessages; the clients: scripts/ensure_services.sh (redis-tools also
# brings redis-benchmark, the bench's Redis headroom); wrk: the bench's throughput phases.
packages=(python3-venv python3-dev pkg-config libmariadb-dev gcc gettext mariadb-client redis-tools wrk)
# Servers only when none is installed: a machine may run them from elsewhere (DATABASE_URL, REDIS_URL).
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || packages+=(mariadb-server)
command -v redis-server >/dev/null 2>&1 || packages+=(redis-server)
# RabbitMQ, the Celery broker (CELERY_BROKER_URL=amqp://...; the test suite's too).
command -v rabbitmq-server >/dev/null 2>&1 || [ -x /usr/sbin/rabbitmq-server ] || packages+=(rabbitmq-server)
for option in "$@"; do
  case "$option" in
    --browser)
      # fonts-wqy-microhei: Chinese glyphs, so zh-hans screenshots show text, not boxes.
      packages+=(chromium fonts-wqy-microhei)
      command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || packages+=(nginx)
      command -v promtool >/dev/null 2>&1 || packages+=(prometheus)
      ;;
    --container)
      # As root this is all podman needs here: its own storage on native overlayfs
      # (no fuse-overlayfs), --network=host (no slirp4netns or passt), no subordinate
      # ids (no uidmap). runc, not crun: the runtime these machines are known to run
      # (scripts/build_image.sh passes --runtime /usr/sbin/runc). debootstrap builds
      # the local base image (scripts/build_base_image.sh), as no registry is reachable.
      packages+=(podman runc debootstrap)
      ;;
    *)
      echo "usage: $0 [--browser] [--container]" >&2
      exit 2
      ;;
  esac
done

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "cardshop needs these system packages: ${missing[*]}" >&2
  echo "This is not a Debian/Ubuntu system: install their equivalents by hand." >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "Missing system packages: ${missing[*]}. Install them as root: apt-get install ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
echo "Installing system packages: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
  || { echo "apt-get could not install: ${missing[*]}" >&2; exit 1; }
