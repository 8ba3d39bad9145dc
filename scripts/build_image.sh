#!/usr/bin/env bash
# Build the project's Dockerfile with podman (no Docker daemon needed): `make image`.
#   scripts/build_image.sh    tag cardshop:local (IMAGE=... for another tag)
#
# By default the base image is the local stand-in scripts/build_base_image.sh makes
# (Debian bookworm + Debian's Python 3.11, tagged localhost/python:3.11-slim-bookworm,
# which the Dockerfile's `FROM python:3.11-slim-bookworm` finds in podman's store),
# because the machines this project is built on reach no image registry.
# BASE=registry pulls the real python:3.11-slim-bookworm instead (untried here: no registry).
#
# Other knobs: PODMAN (default podman), PODMAN_RUNTIME (default /usr/sbin/runc when it
# exists: Debian's runc, which works where crun may not), CA_BUNDLE (default
# /etc/ssl/certs/ca-certificates.crt: mounted read-only into the build's RUN steps so
# pip trusts what this machine trusts, e.g. a TLS-inspecting egress proxy; it is not
# copied into any layer; CA_BUNDLE= turns it off).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-cardshop:local}
BASE=${BASE:-local}
PODMAN=${PODMAN:-podman}
CA_BUNDLE=${CA_BUNDLE-/etc/ssl/certs/ca-certificates.crt}
if [ -z "${PODMAN_RUNTIME+x}" ] && [ -x /usr/sbin/runc ]; then PODMAN_RUNTIME=/usr/sbin/runc; fi

command -v "$PODMAN" >/dev/null 2>&1 || {
  echo "$PODMAN is missing: run scripts/ensure_system_packages.sh --container" >&2
  exit 1
}
podman=("$PODMAN")
[ -n "${PODMAN_RUNTIME:-}" ] && podman+=(--runtime "$PODMAN_RUNTIME")

started=$(date +%s)
args=(
  # docker format: the OCI image format has no HEALTHCHECK, and podman would drop it.
  --format docker
  # The build's RUN steps (apt-get, pip) use the host's network: no bridge, no
  # iptables, which a sandbox may not allow.
  --network host
  # Raising the open-files or process limits is refused on some hosts: ask for no more than the defaults.
  --ulimit nofile=1024:1024 --ulimit nproc=4096:4096
  --tag "$IMAGE" --file Dockerfile
)
if [ "$BASE" = "local" ]; then
  scripts/build_base_image.sh
  # Never look for the base in a registry: the stand-in is in the store.
  args+=(--pull=never)
fi
[ -f "$CA_BUNDLE" ] && args+=(--volume "$CA_BUNDLE:/etc/ssl/certs/ca-certificates.crt:ro")

echo "Building $IMAGE with podman ..."
"${podman[@]}" build "${args[@]}" .
size=$("$PODMAN" image inspect --format '{{.Size}}' "$IMAGE")
echo "Built $IMAGE in $(($(date +%s) - started)) s; image size $((size / 1000000)) MB."
