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
#
# The build stage is tagged too ($IMAGE-build, e.g. cardshop:local-build): it is the
# layer cache of the next build (pip install), so it is kept, under a name instead
# of as a dangling 600 MB <none>. After a successful build the images these two tags
# named before it are removed when nothing names or uses them any more (with their
# own dangling parent layers), and so are dangling images whose last name was one of
# these tags: a rebuild replaces the old images instead of leaving them behind.
# Nothing else in podman's store is touched.
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
  --file Dockerfile
)
BUILD_STAGE_IMAGE="$IMAGE-build"
if [ "$BASE" = "local" ]; then
  scripts/build_base_image.sh
  # Never look for the base in a registry: the stand-in is in the store.
  args+=(--pull=never)
fi
[ -f "$CA_BUNDLE" ] && args+=(--volume "$CA_BUNDLE:/etc/ssl/certs/ca-certificates.crt:ro")

image_id() { "$PODMAN" image inspect --format '{{.Id}}' "$1" 2>/dev/null || true; }
previous=("$(image_id "$IMAGE")" "$(image_id "$BUILD_STAGE_IMAGE")")

echo "Building $IMAGE with podman ..."
# The build stage first, under its own tag; the full build then finds it in the cache.
"${podman[@]}" build "${args[@]}" --target build --tag "$BUILD_STAGE_IMAGE" .
"${podman[@]}" build "${args[@]}" --tag "$IMAGE" .

current=" $(image_id "$IMAGE") $(image_id "$BUILD_STAGE_IMAGE") "
# Also the dangling images these tags named last: replaced by a build that ran at
# the same time (another checkout, the same tag) or before this cleanup existed.
ours=" $IMAGE localhost/$IMAGE $BUILD_STAGE_IMAGE localhost/$BUILD_STAGE_IMAGE "
for id in $("$PODMAN" images --quiet --no-trunc --filter dangling=true); do
  id=${id#sha256:}
  [[ " ${previous[*]} " == *" $id "* ]] && continue
  last=$("$PODMAN" image inspect --format '{{range .NamesHistory}}{{.}} {{break}}{{end}}' "$id" 2>/dev/null || true)
  [ -n "$last" ] && [[ "$ours" == *" ${last% } "* ]] && previous+=("$id")
done
for id in "${previous[@]}"; do
  [ -n "$id" ] && [[ "$current" != *" $id "* ]] || continue
  # Still tagged elsewhere (another name for it): not ours to remove.
  [ "$("$PODMAN" image inspect --format '{{len .RepoTags}}' "$id" 2>/dev/null || echo 1)" = 0 ] || continue
  # No -f: an image a container still uses stays, with a note.
  "$PODMAN" rmi "$id" >/dev/null 2>&1 && echo "Removed the replaced image ${id:0:12}." ||
    echo "Kept the replaced image ${id:0:12} (in use); podman image prune removes it later." >&2
done
size=$("$PODMAN" image inspect --format '{{.Size}}' "$IMAGE")
echo "Built $IMAGE in $(($(date +%s) - started)) s; image size $((size / 1000000)) MB."
