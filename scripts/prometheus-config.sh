#!/usr/bin/env bash
# Writes the local stack's Prometheus configuration into DIR: the top-level
# prometheus.yml (compose's) with the services', web's and Alertmanager's
# names replaced by 127.0.0.1, and the alert rules beside it.
#   scripts/prometheus-config.sh DIR
set -euo pipefail
dir=${1:?usage: $0 DIR}
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$dir"
sed -E 's/^( *- *)(web|alertmanager|[a-z]+-service):/\1127.0.0.1:/; s/"(localhost|alertmanager):(9090|9093)"/"127.0.0.1:\2"/' \
  "$root/prometheus.yml" >"$dir/prometheus.yml"
cp "$root/deploy/prometheus/alerts.yml" "$dir/"
