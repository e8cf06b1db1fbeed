#!/usr/bin/env bash
# Stops exactly what scripts/up.sh started, by pid file (never by process name).
# PostgreSQL and Redis belong to the machine and stay up.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
for name in "${INSTANCES[@]}"; do
  stop_bg "$name"
done
"$ROOT/scripts/broker.sh" stop
