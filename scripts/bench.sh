#!/usr/bin/env bash
# Benchmark figures of this machine, each next to its bound measured in the
# same run. Starts its own release-built stack beside any `make up` one
# (state in .local/bench, databases bench_*, HTTP ports 18280-18284, broker
# 127.0.0.1:19292 with durable PostgreSQL storage) and stops it on exit.
#
#   bounds:  PostgreSQL commits/s (pgbench -N), an axum hello-world (wrk),
#            the broker's produce rate (acks=all, idempotent)
#   project: saturated saga throughput (orders reaching a terminal status /s),
#            POST /orders latency at half that rate, cached GET /products/{id}
#            req/s, ReserveStock calls/s, PostgreSQL commits per order, RSS of
#            each service idle and under load
#
#   BENCH_SECONDS=30 BENCH_CONNECTIONS=64 BENCH_SAGA_CONCURRENCY=32 scripts/bench.sh
# Prints a Markdown table (also written to .local/bench/bench.md).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

export MINISHOP_PROFILE=release
side_stack bench 18280 15251 19292

SECS=${BENCH_SECONDS:-30}
CONNS=${BENCH_CONNECTIONS:-64}
SAGA_CONC=${BENCH_SAGA_CONCURRENCY:-32}
GRPC_CONC=${BENCH_GRPC_CONCURRENCY:-32}
HELLO_PORT=18299
URLS=(--user-url "$USER_URL" --product-url "$PRODUCT_URL" --order-url "$ORDER_URL")
SERVICES=()
for entry in "${ROSTER[@]}"; do SERVICES+=("${entry%% *}"); done

cleanup() { stop_bg bench-hello >/dev/null 2>&1 || true; "$ROOT/scripts/down.sh" >/dev/null 2>&1 || true; }
trap cleanup EXIT
trap 'echo "bench.sh: line $LINENO failed: $BASH_COMMAND" >&2' ERR

"$ROOT/scripts/deps.sh"
log "building release binaries"
cargo build --release --bins --examples -q
REL=${CARGO_TARGET_DIR:-$ROOT/target}/release

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
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
rss_mb() { awk '/^VmRSS:/ {printf "%.0f", $2 / 1024}' "/proc/$(cat "$(pid_file "$1")")/status"; }
broker_commits() { psql_admin -c "SELECT xact_commit FROM pg_stat_database WHERE datname = '$NISSHI_DB'"; }
# "db commits" per service database (read-only transactions included), and
# the cluster's next transaction id: it moves only for transactions that
# write (read-only ones take no id), so its advance counts the durable
# commits, the broker's storage included.
db_commits() {
  local list; list=$(printf "'%s'," "${DATABASES[@]}")
  psql_admin -c "SELECT datname, xact_commit FROM pg_stat_database WHERE datname IN (${list%,})" | tr '|' ' '
}
next_xid() { psql_admin -c "SELECT txid_snapshot_xmax(txid_current_snapshot())"; }
# CPU seconds (user + system) of every process: "pid comm seconds" lines,
# for charging the saturated run's CPU to each part.
HZ=$(getconf CLK_TCK)
cpu_table() {
  # (A process may end between the glob and the read: not an error.)
  { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v hz="$HZ" '{gsub(/[()]/, "", $2); print $1, $2, ($14 + $15) / hz}'
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
stop_bg bench-hello >/dev/null

log "bringing up the bench stack (release) on :$HTTP_PORT_BASE and up"
side_stack_up

log "bound: broker produce rate (50000 x 400 B, acks=all)"
# shellcheck disable=SC2046
produce_line=$(env $(broker_login_env minishop-admin) "$REL/produce_bound" --brokers "$BROKER_ADDR" --messages 50000 --size 400)
produce_rate=$(sed -E 's/.*msgs_per_sec=([0-9.]+).*/\1/' <<<"$produce_line")

declare -A idle_rss peak_rss
sleep 3
for s in "${SERVICES[@]}"; do idle_rss[$s]=$(rss_mb "$s"); peak_rss[$s]=${idle_rss[$s]}; done

log "saturated saga: loadgen closed loop, $SAGA_CONC users placing orders, ${SECS}s"
broker_before=$(broker_commits)
db_before=$(db_commits); xid_before=$(next_xid); cpu_before=$(cpu_table)
"$REL/loadgen" "${URLS[@]}" --duration "$SECS" --concurrency "$SAGA_CONC" --users 32 --products 50 \
  --mix order=4,order_multi=1 --settle 120 --quiet --json "$STATE_DIR/saturated.json" \
  >"$STATE_DIR/logs/saturated.out" 2>&1 &
load=$!
loadgen_cpu=0
while kill -0 "$load" 2>/dev/null; do
  for s in "${SERVICES[@]}"; do
    now=$(rss_mb "$s"); [ "$now" -gt "${peak_rss[$s]}" ] && peak_rss[$s]=$now
  done
  # loadgen's own CPU, read while it lives (it also waits for settling).
  loadgen_cpu=$(awk -v hz="$HZ" '{print ($14 + $15) / hz}' "/proc/$load/stat" 2>/dev/null || echo "$loadgen_cpu")
  sleep 1
done
wait "$load" || { cat "$STATE_DIR/logs/saturated.out"; die "loadgen failed"; }
cat "$STATE_DIR/logs/saturated.out"
broker_after=$(broker_commits)
db_after=$(db_commits); xid_after=$(next_xid); cpu_after=$(cpu_table)
sat=$(jq '.saga.completed_per_second' "$STATE_DIR/saturated.json")
created=$(jq '.saga.orders_created' "$STATE_DIR/saturated.json")
per_order=$(awk -v n="$created" 'NR == FNR {a += $2; next} {b += $2} END {printf "%.1f", (b - a) / n}' \
  <(echo "$db_before") <(echo "$db_after"))
broker_per_order=$(awk -v a="$broker_before" -v b="$broker_after" -v n="$created" 'BEGIN { printf "%.1f", (b - a) / n }')
sat_p99=$(jq '[.operations[] | select(.op == "order")][0].latency.p99_ms' "$STATE_DIR/saturated.json")
shed=$(jq '[.operations[] | .errors["503"] // 0] | add' "$STATE_DIR/saturated.json")
accepted=$(jq '[.operations[] | .ok] | add' "$STATE_DIR/saturated.json")
timeouts=$(jq '.saga.outcomes.cancelled // 0' "$STATE_DIR/saturated.json")
xid_per_order=$(awk -v a="$xid_before" -v b="$xid_after" -v n="$created" 'BEGIN { printf "%.1f", (b - a) / n }')
# Commits per order by database, e.g. "order 21.3, payment 6.0, ...".
per_db=$(awk -v n="$created" -v pre="$DB_PREFIX" 'NR == FNR {a[$1] = $2; next}
  {d = $1; sub("^" pre, "", d); sub("db$", "", d); printf "%s%s %.1f", sep, d, ($2 - a[$1]) / n; sep = ", "}' \
  <(echo "$db_before") <(echo "$db_after"))
# CPU milliseconds per order by part: the services and the broker by pid,
# PostgreSQL as its processes (backends alive at both ends), loadgen itself.
cpu_ms() { # cpu_ms PID|COMM: CPU ms per order of that pid, or of every process named COMM
  awk -v want="$1" -v n="$created" 'NR == FNR {a[$1] = $3; next}
    ($1 == want || $2 == want) && ($1 in a) {s += $3 - a[$1]} END {printf "%.1f", s * 1000 / n}' \
    <(echo "$cpu_before") <(echo "$cpu_after")
}
cpu_rows=""
for s in "${SERVICES[@]}" broker; do
  cpu_rows+="$s $(cpu_ms "$(cat "$(pid_file "$s")")")"$'\n'
done
cpu_rows+="postgres $(cpu_ms postgres)"$'\n'
cpu_rows+="loadgen $(awk -v t="$loadgen_cpu" -v n="$created" 'BEGIN { printf "%.1f", t * 1000 / n }')"
cpu_line=$(awk '{printf "%s%s %s", sep, $1, $2; sep = ", "; t += $2} END {printf " (sum %.1f)", t}' <<<"$cpu_rows")

# The saturated run leaves a backlog behind (pending orders, and events on
# the topic every consumer group still has to read): measure the half rate
# on an idle system.
idle() {
  orders_settled || return 1
  local name lag
  for name in "${SAGA_SERVICES[@]}"; do
    lag=$(curl -fsS "http://127.0.0.1:$(service_port "$name")/metrics" | awk '/^kafka_consumer_lag\{/ {s += $2} END {print s + 0}')
    [ "$lag" = 0 ] || return 1
  done
}
wait_until 600 "the saturated run's backlog to drain" idle || log "warning: orders still pending before the half-rate run"
sleep 5
half=$(awk -v s="$sat" 'BEGIN { printf "%.1f", s / 2 }')
log "POST /orders at half the saturated rate: open loop at $half orders/s, ${SECS}s"
"$REL/loadgen" "${URLS[@]}" --duration "$SECS" --rate "$half" --concurrency 256 --users 32 --products 50 \
  --mix order=1 --settle 120 --quiet --json "$STATE_DIR/half.json" >"$STATE_DIR/logs/half.out" 2>&1 \
  || { cat "$STATE_DIR/logs/half.out"; die "loadgen failed"; }
cat "$STATE_DIR/logs/half.out"
half_p50=$(jq '[.operations[] | select(.op == "order")][0].latency.p50_ms' "$STATE_DIR/half.json")
half_p99=$(jq '[.operations[] | select(.op == "order")][0].latency.p99_ms' "$STATE_DIR/half.json")
saga_p50=$(jq '.saga.completion.p50_ms' "$STATE_DIR/half.json")
saga_p99=$(jq '.saga.completion.p99_ms' "$STATE_DIR/half.json")

log "cached GET /products/1 (wrk, $CONNS connections, ${SECS}s)"
curl -fsS "$PRODUCT_URL/products/1" >/dev/null # fill the cache
# Where product-service's CPU goes meanwhile (perf, user and kernel samples
# of its own process; skipped where perf is missing or not permitted).
get_profile="perf not available"
if command -v perf >/dev/null 2>&1; then
  perf record -q -F 499 -p "$(cat "$(pid_file product-service)")" -o "$STATE_DIR/perf.data" \
    -- sleep "$((SECS > 4 ? SECS - 2 : SECS))" >/dev/null 2>&1 &
  perf_pid=$!
fi
read -r get_rps get_p99 < <(wrk_run "$PRODUCT_URL/products/1")
if [ -n "${perf_pid:-}" ] && wait "$perf_pid" && [ -s "$STATE_DIR/perf.data" ]; then
  get_profile=$(perf report -i "$STATE_DIR/perf.data" --no-children --sort symbol --stdio -g none 2>/dev/null \
    | awk '/%/ && !/^#/ {p = $1; sub("%", "", p)
        if ($0 ~ /tracing|opentelemetry/) c["tracing"] += p
        else if ($0 ~ /malloc|free|realloc|_int_|unlink_chunk| _?mi_|memmove|memcpy/) c["allocation and copies"] += p
        else if ($0 ~ /\[k\]/) c["kernel (sockets)"] += p
        else if ($0 ~ /redis/) c["redis client"] += p
        else if ($0 ~ /hyper|axum|tower/) c["hyper, axum, tower"] += p
        else c["other"] += p}
      END {for (k in c) printf "%s%s %.0f%%", (n++ ? ", " : ""), k, c[k]}')
fi
for s in product-service; do now=$(rss_mb "$s"); [ "$now" -gt "${peak_rss[$s]}" ] && peak_rss[$s]=$now; done

log "ReserveStock ($GRPC_CONC concurrent callers, ${SECS}s)"
reserve_line=$("$REL/examples/reserve_load" --http "$PRODUCT_URL" \
  --grpc "https://127.0.0.1:$PRODUCT_GRPC_PORT" --key "$STATE_DIR/keys/jwt_private.pem" \
  --tls "$STATE_DIR/keys/tls" \
  --concurrency "$GRPC_CONC" --seconds "$SECS")
reserve_cps=$(sed -E 's/.*calls_per_sec=([0-9.]+).*/\1/' <<<"$reserve_line")

# pgbench -N commits are writing transactions: divide by the orders' own.
pg_bound_orders=$(awk -v t="$pg_tps" -v c="$xid_per_order" 'BEGIN { if (c > 0) printf "%.1f", t / c; else print 0 }')
events_needed=$(awk -v s="$sat" 'BEGIN { printf "%.0f", s * 4 }')
rss_rows=""
for s in "${SERVICES[@]}"; do
  rss_rows+="| RSS $s MB (idle / peak under load)$(printf '%*s' $((26 - ${#s})) '') | $(printf '%5s / %-5s' "${idle_rss[$s]}" "${peak_rss[$s]}") |                                |              |       |"$'\n'
done

table=$(cat <<TABLE
Machine: $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); load generators and servers share the cores.
PostgreSQL $(psql_admin -c 'SHOW server_version' | cut -d' ' -f1); Redis $(redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" info server | awk -F: '/^redis_version/ {print $2}' | tr -d '\r'); broker Nisshi $NISSHI_VERSION with durable storage in PostgreSQL (database $NISSHI_DB, same server). Release builds; ${SECS}s per measure.

| measure                                             | value         | bound                          | bound value  | ratio |
|-----------------------------------------------------|---------------|--------------------------------|--------------|-------|
| saturated saga: orders terminal /s ($SAGA_CONC users)         | $(printf '%13.1f' "$sat") | pgbench commits/s ÷ writing tx per order | $(printf '%12.1f' "$pg_bound_orders") | $(ratio "$sat" "$pg_bound_orders") |
| POST /orders p99 ms at saturation                   | $(printf '%13.1f' "$sat_p99") |                                |              |       |
| POST /orders p50 / p99 ms at half rate ($half/s)     | $(printf '%6.1f / %-6.1f' "$half_p50" "$half_p99") | axum hello-world p99 ms        | $(printf '%12.2f' "$hello_p99") |       |
| saga completion p50 / p99 ms at half rate           | $(printf '%6.0f / %-6.0f' "$saga_p50" "$saga_p99") |                                |              |       |
| PostgreSQL commits per order (5 services)           | $(printf '%13.1f' "$per_order") | + broker storage commits/order | $(printf '%12.1f' "$broker_per_order") |       |
| writing transactions per order (all, broker incl.)  | $(printf '%13.1f' "$xid_per_order") |                                |              |       |
| orders refused 503 at saturation / requests ok       | $(printf '%6s / %-6s' "$shed" "$accepted") | cancelled by the payment timeout | $(printf '%12s' "$timeouts") |       |
| events produced /s at saturation (~4 per order)     | $(printf '%13.0f' "$events_needed") | broker produce msgs/s (acks=all) | $(printf '%12.0f' "$produce_rate") | $(ratio "$events_needed" "$produce_rate") |
| cached GET /products/{id} req/s                     | $(printf '%13.0f' "$get_rps") | axum hello-world req/s         | $(printf '%12.0f' "$hello_rps") | $(ratio "$get_rps" "$hello_rps") |
| cached GET /products/{id} p99 ms                    | $(printf '%13.2f' "$get_p99") | axum hello-world p99 ms        | $(printf '%12.2f' "$hello_p99") | $(ratio "$get_p99" "$hello_p99") |
| ReserveStock calls/s ($GRPC_CONC callers, 1 tx each)         | $(printf '%13.0f' "$reserve_cps") | pgbench -N commits/s           | $(printf '%12.0f' "$pg_tps") | $(ratio "$reserve_cps" "$pg_tps") |
${rss_rows}

Saturated run, per order: commits by database: ${per_db}. CPU ms by process: ${cpu_line}.
product-service's CPU during the cached GET (perf samples): ${get_profile}.
TABLE
)
echo
echo "$table" | tee "$STATE_DIR/bench.md"
