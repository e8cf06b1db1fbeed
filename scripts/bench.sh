#!/usr/bin/env bash
# Benchmark figures of this machine, each next to its bound measured in the
# same run. Starts its own release-built stack beside any `make up` one
# (state in .local/bench, databases bench_*, HTTP ports 18280-18284, broker
# 127.0.0.1:19292 with durable PostgreSQL storage) and stops it on exit.
#
#   bounds:  PostgreSQL commits/s (pgbench -N; the saga's bound is that ÷ 10,
#            the commits an order needs) and its CPU per commit, an axum
#            hello-world (wrk) and the same plus one Redis HMGET per request
#            (the ceiling of any read that asks Redis), the broker's produce
#            rate (acks=all, idempotent), POST /orders unloaded (its latency
#            floor), and the goals (POST /orders p99 25 ms at half rate,
#            5 ms of CPU per order)
#   project: saturated saga throughput (orders reaching a terminal status /s),
#            POST /orders latency at half that rate, cached GET /products/{id}
#            req/s, ReserveStock calls/s, PostgreSQL commits per order (a
#            cost), CPU per order by process, RSS of each service idle and
#            under load; a soak at half rate with every service's RSS
#            sampled every 10 s and its slope; then the saga's runs again
#            with two replicas of order-, payment- and notification-service,
#            and the invariants
#
#   BENCH_SECONDS=30 BENCH_CONNECTIONS=64 BENCH_SAGA_CONCURRENCY=32 scripts/bench.sh
#   BENCH_SOAK_SECONDS=600 (the soak's length; 0 leaves it out)
#   BENCH_FLOOR_RATE=5 (orders/s of the unloaded run)
# Prints a Markdown table (also written to .local/bench/bench.md).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

export MINISHOP_PROFILE=release
side_stack bench 18280 15251 19292

SECS=${BENCH_SECONDS:-30}
BENCH_START=$(date -u +%Y-%m-%dT%H:%M:%SZ)
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
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$(cat "$(pid_file "$1")")/status"; }
rss_mb() { awk -v kb="$(rss_kb "$1")" 'BEGIN {printf "%.0f", kb / 1024}'; }
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
# CPU milliseconds per order (or per unit of N) of pid or process name $1 between two cpu_table snapshots.
cpu_ms() { # cpu_ms PID|COMM BEFORE AFTER ORDERS
  awk -v want="$1" -v n="$4" 'NR == FNR {a[$1] = $3; next}
    ($1 == want || $2 == want) && ($1 in a) {s += $3 - a[$1]} END {printf "%.2f", s * 1000 / n}' \
    <(echo "$2") <(echo "$3")
}

log "bound: PostgreSQL commits/s (pgbench -N, 8 clients, ${SECS}s)"
ensure_database bench_pgbench
pgbench -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -i -q -s 10 bench_pgbench >/dev/null 2>&1
# PostgreSQL's own CPU per commit at that rate, the floor of what a commit
# costs here whoever makes it: the machine's busy CPU over the run less
# pgbench's own (its backends come and go with the run, so they are not
# read one by one).
busy_seconds() { awk -v hz="$HZ" '/^cpu / {print ($2 + $3 + $4 + $7 + $8) / hz}' /proc/stat; }
busy_before=$(busy_seconds)
{ TIMEFORMAT='%U %S'; time pgbench -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -N -c 8 -j 2 -T "$SECS" bench_pgbench \
    >"$STATE_DIR/logs/pgbench.out" 2>/dev/null; } 2>"$STATE_DIR/logs/pgbench.time"
busy_after=$(busy_seconds)
pg_tps=$(awk '/^tps/ {print $3; exit}' "$STATE_DIR/logs/pgbench.out")
pg_ms_per_commit=$(awk -v a="$busy_before" -v b="$busy_after" -v t="$pg_tps" -v s="$SECS" \
  '{client = $1 + $2} END {printf "%.3f", (b - a - client) * 1000 / (t * s)}' "$STATE_DIR/logs/pgbench.time")

log "bound: minimal axum hello-world (wrk, $CONNS connections, ${SECS}s)"
start_bg bench-hello "$REL/examples/hello_bound" "127.0.0.1:$HELLO_PORT"
wait_until 10 hello-world port_open "127.0.0.1:$HELLO_PORT" || die "hello_bound did not start"
read -r hello_rps hello_p99 < <(wrk_run "http://127.0.0.1:$HELLO_PORT/hello")
stop_bg bench-hello >/dev/null

log "bound: the hello-world plus one Redis HMGET per request (wrk, $CONNS connections, ${SECS}s)"
start_bg bench-hello "$REL/examples/redis_bound" "127.0.0.1:$HELLO_PORT" "redis://$REDIS_HOST:$REDIS_PORT"
wait_until 10 redis-bound port_open "127.0.0.1:$HELLO_PORT" || die "redis_bound did not start"
read -r redis_rps redis_p99 < <(wrk_run "http://127.0.0.1:$HELLO_PORT/hello")
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

# The saga's figures of one stack layout (TAG: 1 or 2 replicas), into the
# arrays below: the saturated closed loop (throughput, p99, commits, CPU by
# process), then POST /orders at half that rate on the drained system.
declare -A SAT P99 SHED ACCEPTED TIMEOUTS CREATED PER_ORDER BROKER_PER_ORDER XID_PER_ORDER PER_DB CPU_LINE CPU_SUM
declare -A HALF HALF_P50 HALF_P99 SAGA_P50 SAGA_P99 PG_CPU
# The saturated run leaves a backlog behind (pending orders, and events on
# the topic every consumer group still has to read): wait for it to drain.
idle() {
  orders_settled || return 1
  local name lag
  for name in "${SAGA_PROCESSES[@]}"; do
    lag=$(curl -fsS "http://127.0.0.1:$(service_port "$name")/metrics" | awk '/^kafka_consumer_lag\{/ {s += $2} END {print s + 0}')
    [ "$lag" = 0 ] || return 1
  done
}
saga_runs() {
  local tag=$1 out=$STATE_DIR/saturated-$1.json
  log "saturated saga ($tag replica(s)): loadgen closed loop, $SAGA_CONC users placing orders, ${SECS}s"
  local broker_before db_before xid_before cpu_before
  broker_before=$(broker_commits)
  db_before=$(db_commits); xid_before=$(next_xid); cpu_before=$(cpu_table)
  "$REL/loadgen" "${URLS[@]}" --duration "$SECS" --concurrency "$SAGA_CONC" --users 32 --products 50 \
    --mix order=4,order_multi=1 --settle 120 --quiet --json "$out" \
    >"$STATE_DIR/logs/saturated-$tag.out" 2>&1 &
  local load=$! loadgen_cpu=0 s now
  while kill -0 "$load" 2>/dev/null; do
    for s in "${PROCESSES[@]}"; do
      now=$(rss_mb "$s"); [ "$now" -gt "${peak_rss[$s]:-0}" ] && peak_rss[$s]=$now
    done
    # loadgen's own CPU, read while it lives (it also waits for settling).
    loadgen_cpu=$(awk -v hz="$HZ" '{print ($14 + $15) / hz}' "/proc/$load/stat" 2>/dev/null || echo "$loadgen_cpu")
    sleep 1
  done
  wait "$load" || { cat "$STATE_DIR/logs/saturated-$tag.out"; die "loadgen failed"; }
  cat "$STATE_DIR/logs/saturated-$tag.out"
  local broker_after db_after xid_after cpu_after created
  broker_after=$(broker_commits)
  db_after=$(db_commits); xid_after=$(next_xid); cpu_after=$(cpu_table)
  created=$(jq '.saga.orders_created' "$out")
  CREATED[$tag]=$created
  SAT[$tag]=$(jq '.saga.completed_per_second' "$out")
  P99[$tag]=$(jq '[.operations[] | select(.op == "order")][0].latency.p99_ms' "$out")
  SHED[$tag]=$(jq '[.operations[] | .errors["503"] // 0] | add' "$out")
  ACCEPTED[$tag]=$(jq '[.operations[] | .ok] | add' "$out")
  TIMEOUTS[$tag]=$(jq '.saga.outcomes.cancelled // 0' "$out")
  PER_ORDER[$tag]=$(awk -v n="$created" 'NR == FNR {a += $2; next} {b += $2} END {printf "%.1f", (b - a) / n}' \
    <(echo "$db_before") <(echo "$db_after"))
  BROKER_PER_ORDER[$tag]=$(awk -v a="$broker_before" -v b="$broker_after" -v n="$created" 'BEGIN { printf "%.1f", (b - a) / n }')
  XID_PER_ORDER[$tag]=$(awk -v a="$xid_before" -v b="$xid_after" -v n="$created" 'BEGIN { printf "%.1f", (b - a) / n }')
  # Commits per order by database, e.g. "order 21.3, payment 6.0, ...".
  PER_DB[$tag]=$(awk -v n="$created" -v pre="$DB_PREFIX" 'NR == FNR {a[$1] = $2; next}
    {d = $1; sub("^" pre, "", d); sub("db$", "", d); printf "%s%s %.1f", sep, d, ($2 - a[$1]) / n; sep = ", "}' \
    <(echo "$db_before") <(echo "$db_after"))
  # CPU milliseconds per order by part: the services and the broker by pid,
  # PostgreSQL as its processes (backends alive at both ends), loadgen itself.
  local cpu_rows=""
  for s in "${PROCESSES[@]}" broker; do
    cpu_rows+="$s $(cpu_ms "$(cat "$(pid_file "$s")")" "$cpu_before" "$cpu_after" "$created")"$'\n'
  done
  cpu_rows+="postgres $(cpu_ms postgres "$cpu_before" "$cpu_after" "$created")"$'\n'
  cpu_rows+="loadgen $(awk -v t="$loadgen_cpu" -v n="$created" 'BEGIN { printf "%.1f", t * 1000 / n }')"
  CPU_LINE[$tag]=$(awk '{printf "%s%s %s", sep, $1, $2; sep = ", "; t += $2} END {printf " (sum %.1f)", t}' <<<"$cpu_rows")
  CPU_SUM[$tag]=$(awk '{t += $2} END {printf "%.1f", t}' <<<"$cpu_rows")
  PG_CPU[$tag]=$(awk '$1 == "postgres" {print $2}' <<<"$cpu_rows")

  wait_until 600 "the saturated run's backlog to drain" idle || log "warning: orders still pending before the half-rate run"
  sleep 5
  HALF[$tag]=$(awk -v s="${SAT[$tag]}" 'BEGIN { printf "%.1f", s / 2 }')
  out=$STATE_DIR/half-$tag.json
  log "POST /orders at half the saturated rate ($tag replica(s)): open loop at ${HALF[$tag]} orders/s, ${SECS}s"
  "$REL/loadgen" "${URLS[@]}" --duration "$SECS" --rate "${HALF[$tag]}" --concurrency 256 --users 32 --products 50 \
    --mix order=1 --settle 120 --quiet --json "$out" >"$STATE_DIR/logs/half-$tag.out" 2>&1 \
    || { cat "$STATE_DIR/logs/half-$tag.out"; die "loadgen failed"; }
  cat "$STATE_DIR/logs/half-$tag.out"
  HALF_P50[$tag]=$(jq '[.operations[] | select(.op == "order")][0].latency.p50_ms' "$out")
  HALF_P99[$tag]=$(jq '[.operations[] | select(.op == "order")][0].latency.p99_ms' "$out")
  SAGA_P50[$tag]=$(jq '.saga.completion.p50_ms' "$out")
  SAGA_P99[$tag]=$(jq '.saga.completion.p99_ms' "$out")
}

# POST /orders with next to nothing else running: the latency's floor (its
# transactions and the gRPC round trip), against which the half-rate p99
# shows what waiting behind the rest of the load adds.
unloaded_run() {
  local out=$STATE_DIR/unloaded.json
  wait_until 600 "the backlog to drain before the unloaded run" idle || log "warning: orders still pending before the unloaded run"
  log "POST /orders unloaded: open loop at $FLOOR_RATE orders/s, ${SECS}s"
  "$REL/loadgen" "${URLS[@]}" --duration "$SECS" --rate "$FLOOR_RATE" --concurrency 16 --users 32 --products 50 \
    --mix order=1 --settle 120 --quiet --json "$out" >"$STATE_DIR/logs/unloaded.out" 2>&1 \
    || { cat "$STATE_DIR/logs/unloaded.out"; die "loadgen failed"; }
  FLOOR_P50=$(jq '[.operations[] | select(.op == "order")][0].latency.p50_ms' "$out")
  FLOOR_P99=$(jq '[.operations[] | select(.op == "order")][0].latency.p99_ms' "$out")
}
FLOOR_RATE=${BENCH_FLOOR_RATE:-5}

PROCESSES=("${SERVICES[@]}")
SAGA_PROCESSES=("${SAGA_SERVICES[@]}")
saga_runs 1
sat=${SAT[1]}
unloaded_run

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

# Scale-out on one box: a second replica of each saga service (sharing its
# database and consumer group), orders sent round robin to both
# order-services, the same runs again, then the invariants over every
# order of this benchmark.
log "two replicas of order-, payment- and notification-service, on the same cores"
MINISHOP_REPLICAS=2 "$ROOT/scripts/up.sh" >"$STATE_DIR/logs/up-replicas.log" 2>&1 \
  || { tail -n 20 "$STATE_DIR/logs/up-replicas.log"; die "the second replicas did not start"; }
SECOND=("${SAGA_SERVICES[@]/%/-2}")
for s in "${SECOND[@]}"; do
  wait_until 60 "$s to hold partitions" has_partitions "$s" some || die "$s holds no partition"
  idle_rss[$s]=$(rss_mb "$s"); peak_rss[$s]=${idle_rss[$s]}
done
PROCESSES=("${SERVICES[@]}" "${SECOND[@]}")
SAGA_PROCESSES=("${SAGA_SERVICES[@]}" "${SECOND[@]}")
URLS=(--user-url "$USER_URL" --product-url "$PRODUCT_URL"
      --order-url "$ORDER_URL,http://127.0.0.1:$(service_port order-service-2)")
saga_runs 2
wait_until 600 "the two-replica runs' orders to settle" idle || log "warning: orders still pending before the invariants"
# Eight services' pools (10 connections each) and the broker's leave no
# connection of PostgreSQL's 100 for the checker: the second replicas go
# first (their work is settled).
for s in "${SECOND[@]}"; do stop_bg "$s"; done

# The soak runs on the one-replica layout again, after the two-replica runs,
# so those run on the same database sizes as the one-replica runs before them.
URLS=(--user-url "$USER_URL" --product-url "$PRODUCT_URL" --order-url "$ORDER_URL")
SAGA_PROCESSES=("${SAGA_SERVICES[@]}")
# The soak: POST /orders at half the saturated rate for SOAK seconds, each
# service's RSS sampled every 10 s. A backlog or cache without a bound shows
# as a slope; the second half's slope leaves out the warm-up (pools filling,
# allocator arenas reaching their working size).
SOAK=${BENCH_SOAK_SECONDS:-600}
soak_rows=""
if [ "$SOAK" -gt 0 ]; then
  wait_until 600 "the backlog to drain before the soak" idle || log "warning: orders still pending before the soak"
  log "soak: POST /orders at ${HALF[1]}/s for ${SOAK}s, RSS of every service every 10 s"
  "$REL/loadgen" "${URLS[@]}" --duration "$SOAK" --rate "${HALF[1]}" --concurrency 256 --users 32 --products 50 \
    --mix order=1 --settle 120 --quiet --json "$STATE_DIR/soak.json" >"$STATE_DIR/logs/soak.out" 2>&1 &
  soak_load=$!
  soak_file=$STATE_DIR/soak-rss.tsv
  echo "seconds ${SERVICES[*]}" >"$soak_file"
  t=0
  while [ "$t" -le "$SOAK" ] && kill -0 "$soak_load" 2>/dev/null; do
    line=$t
    for s in "${SERVICES[@]}"; do line+=" $(rss_kb "$s")"; done
    echo "$line" >>"$soak_file"
    [ $((t % 60)) = 0 ] && log "soak: ${t}s of ${SOAK}s"
    sleep 10; t=$((t + 10))
  done
  wait "$soak_load" || { cat "$STATE_DIR/logs/soak.out"; die "loadgen failed in the soak"; }
  soak_p99=$(jq '[.operations[] | select(.op == "order")][0].latency.p99_ms' "$STATE_DIR/soak.json")
  # Least-squares slope in MB per minute of column $2, over the samples at
  # or after second $3.
  slope() {
    awk -v col="$2" -v from="$3" 'NR > 1 && $1 >= from {n++; x = $1 / 60; y = $col / 1024
        sx += x; sy += y; sxx += x * x; sxy += x * y}
      END {d = n * sxx - sx * sx; if (n > 2 && d > 0) printf "%+.2f", (n * sxy - sx * sy) / d; else print "n/a"}' "$1"
  }
  col=2
  for s in "${SERVICES[@]}"; do
    first=$(awk -v c="$col" 'NR == 2 {printf "%.0f", $c / 1024}' "$soak_file")
    last=$(awk -v c="$col" 'END {printf "%.0f", $c / 1024}' "$soak_file")
    soak_rows+="| $s RSS MB start / end; slope MB/min whole / 2nd half$(printf '%*s' $((22 - ${#s})) '') | $(printf '%4s / %-4s' "$first" "$last") | $(printf '%+6s / %-6s' "$(slope "$soak_file" "$col" 0)" "$(slope "$soak_file" "$col" $((SOAK / 2)))") | goal: flat (0) |"$'\n'
    col=$((col + 1))
  done
fi
log "invariants over every order of this benchmark"
db_url() { echo "postgres://$PG_USER@$PG_HOST:$PG_PORT/${DB_PREFIX}$1"; }
# shellcheck disable=SC2046
if env $(broker_login_env minishop-admin) "$REL/invariants" --product-db "$(db_url productdb)" \
     --order-db "$(db_url orderdb)" --payment-db "$(db_url paymentdb)" \
     --notification-db "$(db_url notificationdb)" --brokers "$BROKER_ADDR" --since "$BENCH_START" \
     >"$STATE_DIR/logs/invariants.out" 2>&1; then
  invariants="hold"
else
  cat "$STATE_DIR/logs/invariants.out"
  invariants="BROKEN (see $STATE_DIR/logs/invariants.out)"
fi

# The saga's bound: pgbench -N commits/s over the 10 commits an order needs
# (the order's insert, the reservation, the hold with its outbox row, the
# payment with its outbox row, the two confirmations, the notification
# rows). The project's own writing transactions per order are a cost,
# reported beside it, not a divisor.
ORDER_COMMITS=10
# PostgreSQL's CPU for the 10 commits an order needs, each costing what a
# pgbench -N commit does: the part of the 5 ms goal PostgreSQL alone takes.
pg_floor=$(awk -v c="$ORDER_COMMITS" -v m="$pg_ms_per_commit" 'BEGIN { printf "%.1f", c * m }')
pg_bound_orders=$(awk -v t="$pg_tps" -v c="$ORDER_COMMITS" 'BEGIN { printf "%.1f", t / c }')
# r1 vs r2: how the second replica changes a figure.
versus() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0) printf "%+.0f%%", (b - a) * 100 / a; else print "n/a" }'; }
events_needed=$(awk -v s="$sat" 'BEGIN { printf "%.0f", s * 4 }')
rss_rows=""
for s in "${PROCESSES[@]}"; do
  rss_rows+="| RSS $s MB (idle / peak under load)$(printf '%*s' $((26 - ${#s})) '') | $(printf '%5s / %-5s' "${idle_rss[$s]}" "${peak_rss[$s]}") |                                |              |       |"$'\n'
done

table=$(cat <<TABLE
Machine: $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); load generators and servers share the cores.
PostgreSQL $(psql_admin -c 'SHOW server_version' | cut -d' ' -f1); Redis $(redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" info server | awk -F: '/^redis_version/ {print $2}' | tr -d '\r'); broker Nisshi $NISSHI_VERSION with durable storage in PostgreSQL (database $NISSHI_DB, same server). Release builds; ${SECS}s per measure.

| measure                                             | value         | bound                          | bound value  | ratio |
|-----------------------------------------------------|---------------|--------------------------------|--------------|-------|
| saturated saga: orders terminal /s ($SAGA_CONC users)         | $(printf '%13.1f' "${SAT[1]}") | pgbench -N commits/s ÷ $ORDER_COMMITS   | $(printf '%12.1f' "$pg_bound_orders") | $(ratio "${SAT[1]}" "$pg_bound_orders") |
| POST /orders p99 ms at saturation                   | $(printf '%13.1f' "${P99[1]}") |                                |              |       |
| POST /orders p50 / p99 ms at half rate (${HALF[1]}/s)     | $(printf '%6.1f / %-6.1f' "${HALF_P50[1]}" "${HALF_P99[1]}") | goal: p99 25 ms                | $(printf '%12.1f' 25) | $(ratio "${HALF_P99[1]}" 25) |
| POST /orders p50 / p99 ms unloaded (${FLOOR_RATE}/s)            | $(printf '%6.1f / %-6.1f' "$FLOOR_P50" "$FLOOR_P99") | half rate's p99 over this p99  | $(printf '%12.1f' "${HALF_P99[1]}") | $(ratio "${HALF_P99[1]}" "$FLOOR_P99") |
| saga completion p50 / p99 ms at half rate           | $(printf '%6.0f / %-6.0f' "${SAGA_P50[1]}" "${SAGA_P99[1]}") |                                |              |       |
| CPU ms per order, every process                     | $(printf '%13.1f' "${CPU_SUM[1]}") | goal: 5 ms                     | $(printf '%12.1f' 5) | $(ratio "${CPU_SUM[1]}" 5) |
| PostgreSQL CPU ms per order                         | $(printf '%13.1f' "${PG_CPU[1]}") | $ORDER_COMMITS commits × pgbench's ms/commit | $(printf '%12.1f' "$pg_floor") | $(ratio "${PG_CPU[1]}" "$pg_floor") |
| PostgreSQL commits per order (5 services)           | $(printf '%13.1f' "${PER_ORDER[1]}") | + broker storage commits/order | $(printf '%12.1f' "${BROKER_PER_ORDER[1]}") |       |
| writing transactions per order (all, broker incl.)  | $(printf '%13.1f' "${XID_PER_ORDER[1]}") | commits an order needs         | $(printf '%12d' "$ORDER_COMMITS") | $(ratio "${XID_PER_ORDER[1]}" "$ORDER_COMMITS") |
| orders refused 503 at saturation / requests ok       | $(printf '%6s / %-6s' "${SHED[1]}" "${ACCEPTED[1]}") | cancelled by the payment timeout | $(printf '%12s' "${TIMEOUTS[1]}") |       |
| events produced /s at saturation (~4 per order)     | $(printf '%13.0f' "$events_needed") | broker produce msgs/s (acks=all) | $(printf '%12.0f' "$produce_rate") | $(ratio "$events_needed" "$produce_rate") |
| cached GET /products/{id} req/s                     | $(printf '%13.0f' "$get_rps") | axum hello-world req/s         | $(printf '%12.0f' "$hello_rps") | $(ratio "$get_rps" "$hello_rps") |
| cached GET /products/{id} req/s                     | $(printf '%13.0f' "$get_rps") | hello-world + 1 Redis HMGET req/s | $(printf '%12.0f' "$redis_rps") | $(ratio "$get_rps" "$redis_rps") |
| hello-world + 1 Redis HMGET req/s (any fresh read's ceiling) | $(printf '%13.0f' "$redis_rps") | axum hello-world req/s         | $(printf '%12.0f' "$hello_rps") | $(ratio "$redis_rps" "$hello_rps") |
| cached GET /products/{id} p99 ms                    | $(printf '%13.2f' "$get_p99") | axum hello-world p99 ms        | $(printf '%12.2f' "$hello_p99") | $(ratio "$get_p99" "$hello_p99") |
| ReserveStock calls/s ($GRPC_CONC callers, 1 tx each)         | $(printf '%13.0f' "$reserve_cps") | pgbench -N commits/s           | $(printf '%12.0f' "$pg_tps") | $(ratio "$reserve_cps" "$pg_tps") |
${rss_rows}

Saturated run, per order: commits by database: ${PER_DB[1]}. CPU ms by process: ${CPU_LINE[1]}.
PostgreSQL's CPU per pgbench -N commit: ${pg_ms_per_commit} ms (the machine's busy CPU over the run, less pgbench's own).

Soak: POST /orders at ${HALF[1]}/s for ${SOAK}s (p99 ${soak_p99:-n/a} ms), RSS every 10 s ($STATE_DIR/soak-rss.tsv):

| service                                                              | RSS MB      | slope MB/min    | bound          |
|----------------------------------------------------------------------|-------------|-----------------|----------------|
${soak_rows}
Two replicas of order-, payment- and notification-service on the same cores (same invocation):

| measure                                   | 1 replica     | 2 replicas    | change |
|-------------------------------------------|---------------|---------------|--------|
| saturated saga: orders terminal /s        | $(printf '%13.1f' "${SAT[1]}") | $(printf '%13.1f' "${SAT[2]}") | $(versus "${SAT[1]}" "${SAT[2]}") |
| ratio to pgbench -N ÷ $ORDER_COMMITS              | $(printf '%13s' "$(ratio "${SAT[1]}" "$pg_bound_orders")") | $(printf '%13s' "$(ratio "${SAT[2]}" "$pg_bound_orders")") |        |
| POST /orders p99 ms at saturation         | $(printf '%13.1f' "${P99[1]}") | $(printf '%13.1f' "${P99[2]}") | $(versus "${P99[1]}" "${P99[2]}") |
| POST /orders p50 / p99 ms at half rate    | $(printf '%6.1f / %-6.1f' "${HALF_P50[1]}" "${HALF_P99[1]}") | $(printf '%6.1f / %-6.1f' "${HALF_P50[2]}" "${HALF_P99[2]}") | $(versus "${HALF_P99[1]}" "${HALF_P99[2]}") |
| CPU ms per order, every process           | $(printf '%13.1f' "${CPU_SUM[1]}") | $(printf '%13.1f' "${CPU_SUM[2]}") | $(versus "${CPU_SUM[1]}" "${CPU_SUM[2]}") |

Two replicas, per order: commits by database: ${PER_DB[2]}. CPU ms by process: ${CPU_LINE[2]}.
Invariants over every order of this benchmark (both layouts): ${invariants}.
product-service's CPU during the cached GET (perf samples): ${get_profile}.
TABLE
)
echo
echo "$table" | tee "$STATE_DIR/bench.md"
