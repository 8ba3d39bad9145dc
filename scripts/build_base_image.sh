#!/usr/bin/env bash
# Build a local stand-in for the Dockerfile's base image, python:3.11-slim-bookworm,
# on a machine that reaches Debian's package mirror but no image registry:
# debootstrap a minimal Debian bookworm with Debian's own Python 3.11 (python3,
# python3-venv for `python -m venv` and its pip, python-is-python3 for `python`),
# then `podman import` it as localhost/python:3.11-slim-bookworm. No compiler:
# the Dockerfile's build stage installs gcc itself, its runtime stage must not have one.
#
#   scripts/build_base_image.sh            build unless the image exists from this same script
#   scripts/build_base_image.sh --force    build again
#
# The image carries a label with this script's hash: when the script changes, the
# next run builds again; otherwise it returns at once (make image, the container test).
# Environment: BASE_IMAGE (tag), DEBIAN_MIRROR and DEBIAN_SECURITY_MIRROR (default:
# the ones apt uses on this machine, else deb.debian.org), PODMAN (default podman).
# Needs root (debootstrap, podman's store) and the packages of
# `scripts/ensure_system_packages.sh --container`.
set -euo pipefail

BASE_IMAGE=${BASE_IMAGE:-localhost/python:3.11-slim-bookworm}
PODMAN=${PODMAN:-podman}
SUITE=bookworm
LABEL=org.cardshop.base-recipe
recipe=$(sha256sum "$0" | cut -c1-16)

if [ "${1:-}" != "--force" ]; then
  have=$($PODMAN image inspect --format "{{index .Labels \"$LABEL\"}}" "$BASE_IMAGE" 2>/dev/null || true)
  if [ "$have" = "$recipe" ]; then
    echo "Base image $BASE_IMAGE is up to date (recipe $recipe)."
    exit 0
  fi
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "build_base_image.sh runs debootstrap, which needs root." >&2
  exit 1
fi
for tool in debootstrap "$PODMAN"; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "$tool is missing: run scripts/ensure_system_packages.sh --container" >&2
    exit 1
  }
done

# The mirror apt already uses here (deb822 "URIs:" or one-line "deb" entries), so
# the build reaches the same servers apt does; deb.debian.org otherwise.
apt_uri() { # $1: a pattern the URI's path must match
  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
    | sed -nE 's/^[[:space:]]*(URIs:|deb)[[:space:]]+(\[[^]]*\][[:space:]]+)?//p' | tr ' ' '\n' \
    | grep -E "^https?://[^ ]*$1/?$" | head -1 || true
}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-$(apt_uri '/debian')}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
DEBIAN_SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-$(apt_uri '/debian-security')}
DEBIAN_SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}

work=$(mktemp -d "${TMPDIR:-/tmp}/cardshop-base.XXXXXX")
cleanup() {
  # debootstrap may leave /proc or /sys mounted in the tree after a failure.
  for m in proc sys dev/pts dev; do umount -l "$work/rootfs/$m" 2>/dev/null || true; done
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT
root=$work/rootfs

started=$(date +%s)
echo "debootstrap $SUITE (minbase + Python 3.11) from $DEBIAN_MIRROR ..."
if ! debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3 \
  "$SUITE" "$root" "$DEBIAN_MIRROR" >"$work/debootstrap.log" 2>&1; then
  tail -30 "$work/debootstrap.log" >&2
  cat "$root/debootstrap/debootstrap.log" 2>/dev/null | tail -30 >&2 || true
  echo "debootstrap failed (mirror $DEBIAN_MIRROR)" >&2
  exit 1
fi

# Python's C headers, as the official image has them (pip builds mysqlclient
# against them), without the packages libpython3.11-dev would bring (libc6-dev,
# zlib1g-dev, libexpat1-dev, a 25 MB static library): only its include files,
# from the package of the very version installed.
version=$(chroot "$root" dpkg-query -W -f='${Version}' libpython3.11-stdlib)
mkdir -p "$root/tmp/dev"
if ! chroot "$root" sh -c "cd /tmp/dev && apt-get -qq update && apt-get -qq download libpython3.11-dev=$version" \
  >"$work/headers.log" 2>&1; then
  cat "$work/headers.log" >&2
  echo "could not download libpython3.11-dev $version from $DEBIAN_MIRROR" >&2
  exit 1
fi
dpkg-deb --fsys-tarfile "$root"/tmp/dev/libpython3.11-dev_*.deb \
  | tar -x -C "$root" --wildcards './usr/include/*'
test -f "$root/usr/include/python3.11/Python.h"

# Like Debian's own container images: updates and security sources, and no
# documentation, manual pages or translations from later apt-get installs (the
# Dockerfile's apt-get runs inherit this), nor apt's download cache.
rm -f "$root/etc/apt/sources.list"
cat >"$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $DEBIAN_MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $DEBIAN_SECURITY_MIRROR
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
cat >"$root/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
EOF
echo 'Acquire::GzipIndexes "true"; Acquire::CompressionTypes::Order:: "gz";' >"$root/etc/apt/apt.conf.d/docker-gzip-indexes"
echo 'APT::Install-Recommends "false"; APT::Install-Suggests "false";' >"$root/etc/apt/apt.conf.d/docker-no-recommends"
find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* \
  "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* "$root"/var/log/* "$root"/debootstrap \
  "$root"/tmp/* "$root"/root/.cache
# The build host's name and resolver do not belong in the image (podman mounts its own).
: >"$root/etc/resolv.conf"
echo localhost >"$root/etc/hostname"

python_version=$(chroot "$root" python --version 2>&1 | cut -d' ' -f2)
echo "Importing $BASE_IMAGE (Python $python_version) ..."
tar --numeric-owner --xattrs --one-file-system -C "$root" -c . | $PODMAN import \
  --change "LABEL $LABEL=$recipe" \
  --change "LABEL org.cardshop.base-python=$python_version" \
  --change "LABEL org.opencontainers.image.description=Debian $SUITE minbase with Debian's Python $python_version, built by cardshop's scripts/build_base_image.sh" \
  --change "ENV LANG=C.UTF-8" \
  --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
  --change 'CMD ["python3"]' \
  --message "debootstrap $SUITE minbase + python3 (cardshop)" \
  - "$BASE_IMAGE" >/dev/null
size=$($PODMAN image inspect --format '{{.Size}}' "$BASE_IMAGE")
echo "Built $BASE_IMAGE in $(($(date +%s) - started)) s: $((size / 1000000)) MB, recipe $recipe."
