#!/usr/bin/env bash
# Validates everything under deploy/ and the container/CI files offline (no
# engine, no cluster): Prometheus configs and alert rules with promtool,
# docker-compose.yml with `docker compose config`, the Kubernetes manifests
# (kustomize build of base and the dev overlay) against the API schemas with
# kubernetes-validate, then the project's own rules for all of them
# (scripts/deploy_policy.py), and cargo-deny when it is installed.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

log "promtool: Prometheus configs, alert rules and their unit tests"
(
  cd deploy/prometheus
  for config in prometheus.yml prometheus.compose.yml; do
    promtool check config "$config" >/dev/null || die "promtool: $config is invalid"
  done
  promtool check rules alerts.yml >/dev/null || die "promtool: alerts.yml is invalid"
  promtool test rules alerts.test.yml >/dev/null || die "promtool: the alert unit tests fail"
)

log "docker compose config: docker-compose.yml"
if docker compose version >/dev/null 2>&1; then compose=(docker compose); else compose=(docker-compose); fi
# The secret files are made by scripts/keys.sh; config checks they exist.
"$ROOT/scripts/keys.sh" >/dev/null
"${compose[@]}" -f docker-compose.yml config -q || die "docker-compose.yml is invalid"

command -v kubectl >/dev/null 2>&1 || die "kubectl (its kustomize) is needed to build deploy/k8s"
log "kustomize + kubernetes-validate: deploy/k8s (base, overlays/dev, overlays/strimzi)"
rendered=$(mktemp -d)
trap 'rm -rf "$rendered"' EXIT
# (Strimzi's KafkaUser has no schema here: the policy rules check it.)
for dir in deploy/k8s/base deploy/k8s/overlays/dev deploy/k8s/overlays/strimzi; do
  out="$rendered/$(echo "$dir" | tr / _).yaml"
  kubectl kustomize "$dir" >"$out" || die "kustomize cannot build $dir"
  kubernetes-validate --kubernetes-version "$K8S_VERSION" --strict --quiet "$out" \
    || die "$dir does not validate against Kubernetes $K8S_VERSION"
done

log "deployment rules (scripts/deploy_policy.py)"
python3 "$ROOT/scripts/deploy_policy.py" "$rendered"/*.yaml

if command -v cargo-deny >/dev/null 2>&1; then
  # Advisories need the RustSec database from the network; the rest is offline.
  log "cargo deny: bans, licenses, sources"
  cargo deny --log-level error check bans licenses sources || die "cargo deny failed"
else
  log "cargo-deny is not installed: skipping its check (the GitHub workflow runs it)"
fi
log "deployment files: all checks pass"
