#!/usr/bin/env bash
# Roll cardshop out to Kubernetes: the schema first, then the processes.
#   deploy/k8s/deploy.sh deploy/k8s/overlays/production   (or single-node, or deploy/k8s/keda)
# Plain kubectl, no hooks (kustomize has none):
#   1. render the overlay once, so every step applies the same objects;
#   2. delete the previous migrate Job (a Job's pod template cannot change);
#   3. apply the configuration and the migrate Job alone, and wait for the
#      Job to complete: the old pods keep serving on the old schema meanwhile,
#      so a migration must not break the release before it (docs/deploy.md).
#      The Job's conditions are polled (MIGRATE_POLL seconds, default 5): a Job
#      that has failed (backoffLimit spent) never completes, and `kubectl wait
#      --for=condition=complete` would sit out the whole MIGRATE_TIMEOUT on it;
#   4. apply everything; the Deployments roll to the new image and
#      configuration (their ConfigMap and Secret names carry a content hash);
#   5. wait for each rollout.
# A failed or timed-out migration stops here, before any pod changes.
# KUBECTL names the kubectl to use (default: kubectl on PATH); MIGRATE_TIMEOUT is
# seconds or a number with s, m or h (default 30m).
set -euo pipefail
overlay="${1:?usage: deploy.sh OVERLAY_DIRECTORY}"
kubectl="${KUBECTL:-kubectl}"
namespace="${NAMESPACE:-cardshop}"
timeout="${MIGRATE_TIMEOUT:-30m}"
poll="${MIGRATE_POLL:-5}"
case "$timeout" in
  *h) timeout_seconds=$((${timeout%h} * 3600)) ;;
  *m) timeout_seconds=$((${timeout%m} * 60)) ;;
  *s) timeout_seconds=${timeout%s} ;;
  *) timeout_seconds=$timeout ;;
esac

rendered="$(mktemp)"
trap 'rm -f "$rendered"' EXIT
"$kubectl" kustomize "$overlay" >"$rendered"

"$kubectl" create namespace "$namespace" --dry-run=client -o yaml | "$kubectl" apply -f -
"$kubectl" -n "$namespace" delete job migrate --ignore-not-found --wait=true
"$kubectl" apply -f "$rendered" -l 'app.kubernetes.io/component in (config, migrate)'
migrate_failed() { # $1: why
  echo "migrate did not complete ($1): nothing else was changed. Its log:" >&2
  "$kubectl" -n "$namespace" logs job/migrate --tail=50 >&2 || true
  exit 1
}
deadline=$((SECONDS + timeout_seconds))
while :; do
  # The types of the Job's true conditions, e.g. " Complete " or " FailureTarget Failed ".
  # A failed read (the API server briefly away) just waits for the next poll.
  conditions=" $("$kubectl" -n "$namespace" get job/migrate \
    -o jsonpath='{range .status.conditions[?(@.status=="True")]}{.type}{" "}{end}' || true) "
  case "$conditions" in
    *" Complete "*) break ;;
    # FailureTarget (Kubernetes 1.31+) comes first: the Job is failing, its pods are stopping.
    *" Failed "* | *" FailureTarget "*) migrate_failed "the Job failed" ;;
  esac
  ((SECONDS < deadline)) || migrate_failed "timed out after $timeout"
  sleep "$poll"
done
"$kubectl" apply -f "$rendered"
for deployment in web worker beat nginx; do
  "$kubectl" -n "$namespace" rollout status "deployment/$deployment" --timeout=10m
done
