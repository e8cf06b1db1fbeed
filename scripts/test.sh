#!/usr/bin/env bash
# Runs every test of the workspace against the real PostgreSQL, Redis and
# Kafka-protocol broker of this machine (started if they are not running; a
# broker this script starts gets throwaway storage and is stopped at the end).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
"$ROOT/scripts/deps.sh"
export TEST_DATABASE_ADMIN_URL=${TEST_DATABASE_ADMIN_URL:-postgres://$PG_USER@$PG_HOST:$PG_PORT/postgres}
export TEST_REDIS_URL=${TEST_REDIS_URL:-redis://$REDIS_HOST:$REDIS_PORT}
export TEST_KAFKA_BROKERS=${TEST_KAFKA_BROKERS:-$BROKER_ADDR}
# The tests' broker requires logins, as make up's does: it is durable (a
# memory broker can't store logins) on a database of its own, emptied
# first, and the tests log in as minishop-admin. A broker that already runs
# is used as it is: say how to log in to it with KAFKA_SASL_* yourself.
login=()
if ! port_open "$BROKER_ADDR"; then
  export NISSHI_DB=nisshi_test
  psql_admin -c "DROP DATABASE IF EXISTS \"$NISSHI_DB\" WITH (FORCE)" >/dev/null
  "$ROOT/scripts/broker.sh" start durable
  trap '"$ROOT/scripts/broker.sh" stop' EXIT
  read -r -a login <<<"$(broker_login_env minishop-admin)"
fi
# Each test creates its own database test_*; drop the ones earlier runs left.
psql_admin -c "SELECT datname FROM pg_database WHERE datname LIKE 'test\_%'" | while read -r db; do
  [ -n "$db" ] && psql_admin -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null
done
# Prometheus, compose, Kubernetes, Loki/Promtail, Dockerfile and workflow files.
"$ROOT/scripts/check-deploy.sh"

# nextest runs each test in its own process under a time limit
# (.config/nextest.toml): a hung test fails alone instead of stalling the run.
# Only the tests get the login: the stacks below set their own.
env "${login[@]}" cargo nextest run --workspace --all-targets "$@"

# Bad input at every service's HTTP API, on a stack of its own.
log "schemathesis: generated requests against every service"
"$ROOT/scripts/api-fuzz.sh" --own-stack

# The storefront in Debian's Chromium, on a seeded stack of its own.
log "browser tests: the web front in Chromium"
"$ROOT/scripts/e2e.sh" --own-stack

# The short chaos run: its own stack under load, services killed, the broker
# restarted, Redis and product-service stopped; then every invariant.
log "chaos (short): faults under load, then the invariants"
CHAOS_SHORT=1 "$ROOT/scripts/chaos.sh"
