#!/usr/bin/env bash
# Roll cardshop out to Kubernetes: the schema first, then the processes.
#   deploy/k8s/deploy.sh deploy/k8s/overlays/production   (or single-node, or deploy/k8s/keda)
# Plain kubectl, no hooks (kustomize has none):
#   1. render the overlay once, so every step applies the same objects;
#   2. delete the previous migrate Job (a Job's pod template cannot change);
#   3. apply the configuration and the migrate Job alone, and wait for the
#      Job to complete: the old pods keep serving on the old schema meanwhile,
#      so a migration must not break the release before it (docs/deploy.md);
#   4. apply everything; the Deployments roll to the new image and
#      configuration (their ConfigMap and Secret names carry a content hash);
#   5. wait for each rollout.
# A failed or timed-out migration stops here, before any pod changes.
# KUBECTL names the kubectl to use (default: kubectl on PATH).
set -euo pipefail
overlay="${1:?usage: deploy.sh OVERLAY_DIRECTORY}"
kubectl="${KUBECTL:-kubectl}"
namespace="${NAMESPACE:-cardshop}"
timeout="${MIGRATE_TIMEOUT:-30m}"

rendered="$(mktemp)"
trap 'rm -f "$rendered"' EXIT
"$kubectl" kustomize "$overlay" >"$rendered"

"$kubectl" create namespace "$namespace" --dry-run=client -o yaml | "$kubectl" apply -f -
"$kubectl" -n "$namespace" delete job migrate --ignore-not-found --wait=true
"$kubectl" apply -f "$rendered" -l 'app.kubernetes.io/component in (config, migrate)'
if ! "$kubectl" -n "$namespace" wait --for=condition=complete job/migrate --timeout="$timeout"; then
  echo "migrate did not complete: nothing else was changed. Its log:" >&2
  "$kubectl" -n "$namespace" logs job/migrate --tail=50 >&2 || true
  exit 1
fi
"$kubectl" apply -f "$rendered"
for deployment in web worker beat nginx; do
  "$kubectl" -n "$namespace" rollout status "deployment/$deployment" --timeout=10m
done
