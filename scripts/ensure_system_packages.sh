#!/usr/bin/env bash
# Install the Debian packages cardshop needs, only those missing.
#   ensure_system_packages.sh            build + runtime packages
#   ensure_system_packages.sh --browser  also Chromium for the browser tests
set -euo pipefail

packages=(pkg-config libmariadb-dev gcc python3-dev gettext mariadb-client redis-tools)
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || packages+=(mariadb-server)
command -v redis-server >/dev/null 2>&1 || packages+=(redis-server)
[ "${1:-}" = "--browser" ] && packages+=(chromium)

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
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "Installing system packages: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
