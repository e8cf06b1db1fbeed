#!/usr/bin/env bash
# Runs every test of the workspace against the real PostgreSQL and Redis of
# this machine (started if they are not running).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
"$ROOT/scripts/deps.sh"
export TEST_DATABASE_ADMIN_URL=${TEST_DATABASE_ADMIN_URL:-postgres://$PG_USER@$PG_HOST:$PG_PORT/postgres}
export TEST_REDIS_URL=${TEST_REDIS_URL:-redis://$REDIS_HOST:$REDIS_PORT}
# Each test creates its own database test_*; drop the ones earlier runs left.
psql_admin -c "SELECT datname FROM pg_database WHERE datname LIKE 'test\_%'" | while read -r db; do
  [ -n "$db" ] && psql_admin -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null
done
cargo test --workspace --all-targets "$@"
