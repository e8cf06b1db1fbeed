#!/usr/bin/env bash
# Benchmark figures of this machine, each next to its bound measured in the
# same run:
#   cached GET /products/{id} req/s and p99   vs a minimal axum hello-world (same wrk settings)
#   ReserveStock calls/s (one transaction)    vs PostgreSQL commits/s (pgbench -N)
# Starts its own release-built product-service on spare ports against a fresh
# database `bench_productdb`, and stops everything it started on exit.
#   BENCH_SECONDS=10 BENCH_CONNECTIONS=64 BENCH_GRPC_CONCURRENCY=32 scripts/bench.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

SECS=${BENCH_SECONDS:-10}
CONNS=${BENCH_CONNECTIONS:-64}
GRPC_CONC=${BENCH_GRPC_CONCURRENCY:-32}
HTTP_PORT=18081
GRPC_PORT=15052
HELLO_PORT=18099

"$ROOT/scripts/deps.sh"
"$ROOT/scripts/keys.sh"
log "building release binaries"
cargo build --release -p product-service --bins --examples
REL=${CARGO_TARGET_DIR:-$ROOT/target}/release

cleanup() { stop_bg bench-product-service; stop_bg bench-hello; }
trap cleanup EXIT

# wrk's latency percentiles come with units (us, ms, s): print milliseconds.
wrk_run() {
  wrk -t2 -c"$CONNS" -d"${SECS}s" --latency "$1" >"$STATE_DIR/logs/wrk.out"
  local rps p99
  rps=$(awk '/^Requests\/sec:/ {print $2}' "$STATE_DIR/logs/wrk.out")
  p99=$(awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; print v}' "$STATE_DIR/logs/wrk.out")
  if grep -q 'Non-2xx' "$STATE_DIR/logs/wrk.out"; then
    die "wrk saw error responses: $(grep 'Non-2xx' "$STATE_DIR/logs/wrk.out")"
  fi
  echo "$rps $p99"
}

log "bound: PostgreSQL commits/s (pgbench -N, 8 clients, ${SECS}s)"
ensure_database bench_pgbench
pgbench -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -i -q -s 10 bench_pgbench >/dev/null 2>&1
pg_tps=$(pgbench -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -N -c 8 -j 2 -T "$SECS" bench_pgbench 2>/dev/null \
  | awk '/^tps/ {print $3; exit}')

log "bound: minimal axum hello-world (wrk, $CONNS connections, ${SECS}s)"
start_bg bench-hello "$REL/examples/hello_bound" "127.0.0.1:$HELLO_PORT"
wait_until 10 hello-world port_open "127.0.0.1:$HELLO_PORT" || die "hello_bound did not start"
read -r hello_rps hello_p99 < <(wrk_run "http://127.0.0.1:$HELLO_PORT/hello")
stop_bg bench-hello

log "starting product-service (release) on :$HTTP_PORT / :$GRPC_PORT"
psql_admin -c 'DROP DATABASE IF EXISTS bench_productdb WITH (FORCE)' >/dev/null
ensure_database bench_productdb
start_bg bench-product-service env \
  HTTP_ADDR="127.0.0.1:$HTTP_PORT" GRPC_ADDR="127.0.0.1:$GRPC_PORT" \
  DATABASE_URL="postgres://$PG_USER@$PG_HOST:$PG_PORT/bench_productdb" \
  REDIS_URL="redis://$REDIS_HOST:$REDIS_PORT" CACHE_KEY_PREFIX="bench:$$" \
  JWT_PUBLIC_KEY_FILE="$STATE_DIR/keys/jwt_public.pem" DB_MAX_CONNECTIONS=20 RUST_LOG=warn \
  "$REL/product-service"
wait_until 30 product-service curl -fsS "http://127.0.0.1:$HTTP_PORT/ready" \
  || die "product-service did not start; see $STATE_DIR/logs/bench-product-service.log"

log "ReserveStock ($GRPC_CONC concurrent callers, ${SECS}s)"
reserve_line=$("$REL/examples/reserve_load" --http "http://127.0.0.1:$HTTP_PORT" \
  --grpc "http://127.0.0.1:$GRPC_PORT" --key "$STATE_DIR/keys/jwt_private.pem" \
  --concurrency "$GRPC_CONC" --seconds "$SECS")
echo "  $reserve_line"
reserve_cps=$(sed -E 's/.*calls_per_sec=([0-9.]+).*/\1/' <<<"$reserve_line")
reserve_p99=$(sed -E 's/.*p99_ms=([0-9.]+).*/\1/' <<<"$reserve_line")

log "cached GET /products/1 (wrk, $CONNS connections, ${SECS}s)"
curl -fsS "http://127.0.0.1:$HTTP_PORT/products/1" >/dev/null # fill the cache
read -r get_rps get_p99 < <(wrk_run "http://127.0.0.1:$HTTP_PORT/products/1")
hits=$(curl -fsS "http://127.0.0.1:$HTTP_PORT/metrics" | awk '/^cache_lookups_total\{.*result="hit"/ {print $2}')

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

cat <<TABLE

Machine: $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
PostgreSQL $(psql_admin -c 'SHOW server_version' | cut -d' ' -f1), Redis $(redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" info server | awk -F: '/^redis_version/ {print $2}' | tr -d '\r'); load and server share the same cores.

| measure                                  | value        | bound                          | bound value  | ratio |
|------------------------------------------|--------------|--------------------------------|--------------|-------|
| cached GET /products/{id} req/s          | $(printf '%12.0f' "$get_rps") | axum hello-world req/s         | $(printf '%12.0f' "$hello_rps") | $(ratio "$get_rps" "$hello_rps") |
| cached GET /products/{id} p99 ms         | $(printf '%12.2f' "$get_p99") | axum hello-world p99 ms        | $(printf '%12.2f' "$hello_p99") | $(ratio "$get_p99" "$hello_p99") |
| ReserveStock calls/s (1 tx each)         | $(printf '%12.0f' "$reserve_cps") | pgbench -N commits/s           | $(printf '%12.0f' "$pg_tps") | $(ratio "$reserve_cps" "$pg_tps") |
| ReserveStock p99 ms                      | $(printf '%12.2f' "$reserve_p99") |                                |              |       |

Cache hits recorded by the service during the run: ${hits:-0}
TABLE
