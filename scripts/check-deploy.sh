#!/usr/bin/env bash
# Validates everything under deploy/ and the container/CI files offline (no
# engine, no cluster): Prometheus configs and alert rules with promtool (a
# unit test for every alert), Alertmanager's with amtool, compose, the GitHub
# workflows and Dependabot against their vendored JSON schemas
# (check-jsonschema), the Dockerfile with hadolint, docker-compose.yml with
# `docker compose config`, the Kubernetes manifests
# (kustomize build of base and the dev overlay) against the API schemas with
# kubernetes-validate, then the project's own rules for all of them
# (scripts/deploy_policy.py), docs/asyncapi.yaml with AsyncAPI's parser,
# and cargo-deny when it is installed.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

log "promtool: prometheus.yml, the alert rules, a unit test for every alert"
rendered=$(mktemp -d)
trap 'rm -rf "$rendered"' EXIT
# prometheus.yml names its rule file beside itself, as compose mounts them.
cp prometheus.yml deploy/prometheus/alerts.yml "$rendered/"
promtool check config "$rendered/prometheus.yml" >/dev/null || die "promtool: prometheus.yml is invalid"
(
  cd deploy/prometheus
  promtool check rules alerts.yml >/dev/null || die "promtool: alerts.yml is invalid"
  promtool test rules alerts.test.yml >/dev/null || die "promtool: the alert unit tests fail"
  untested=$(comm -23 <(sed -n 's/^ *- alert: *//p' alerts.yml | sort -u) \
                      <(sed -n 's/^ *alertname: *//p' alerts.test.yml | sort -u))
  [ -z "$untested" ] || die "promtool: no unit test for alert(s): $(echo $untested)"
)
if command -v amtool >/dev/null 2>&1; then
  amtool check-config deploy/alertmanager/alertmanager.yml >/dev/null || die "amtool: alertmanager.yml is invalid"
else
  die "amtool is not installed (scripts/deps.sh installs prometheus-alertmanager)"
fi

log "the AsyncAPI document: AsyncAPI's parser"
node scripts/asyncapi-check.mjs docs/asyncapi.yaml >/dev/null || die "docs/asyncapi.yaml is not valid AsyncAPI"
log "check-jsonschema (vendored schemas): compose, GitHub workflows, Dependabot"
check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml >/dev/null \
  || die "docker-compose.yml does not match the Compose specification"
check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml >/dev/null \
  || die "a GitHub workflow does not match its schema"
check-jsonschema --builtin-schema vendor.dependabot .github/dependabot.yml >/dev/null \
  || die ".github/dependabot.yml does not match its schema"

log "hadolint: Dockerfile"
hadolint Dockerfile || die "hadolint: Dockerfile"

log "docker compose config: docker-compose.yml"
if docker compose version >/dev/null 2>&1; then compose=(docker compose); else compose=(docker-compose); fi
# The secret files are made by scripts/keys.sh; config checks they exist.
"$ROOT/scripts/keys.sh" >/dev/null
"${compose[@]}" -f docker-compose.yml config -q || die "docker-compose.yml is invalid"

command -v kubectl >/dev/null 2>&1 || die "kubectl (its kustomize) is needed to build deploy/k8s"
log "kustomize + kubernetes-validate ($K8S_VERSIONS): deploy/k8s (base, overlays/dev, overlays/strimzi)"
# (Strimzi's and the Prometheus Operator's kinds have no schema here: the
# policy rules check them.)
for dir in deploy/k8s/base deploy/k8s/overlays/dev deploy/k8s/overlays/strimzi; do
  out="$rendered/$(echo "$dir" | tr / _).yaml"
  kubectl kustomize "$dir" >"$out" || die "kustomize cannot build $dir"
  for version in $K8S_VERSIONS; do
    if ! kubernetes-validate --kubernetes-version "$version" --strict --quiet "$out" >"$out.log" 2>&1; then
      cat "$out.log" >&2
      die "$dir does not validate against Kubernetes $version"
    fi
    grep -v "Couldn't find schema for kind" "$out.log" >&2 || true
  done
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
