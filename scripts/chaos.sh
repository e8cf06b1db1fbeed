#!/usr/bin/env bash
# Chaos under load, then the invariants (docs/saga.md).
#
# Brings up its own stack beside any `make up` one (state in .local/chaos,
# databases chaos_*, HTTP ports 18180-18184 (second replicas 18192-18194), broker 127.0.0.1:19192 with
# durable storage, its own Redis on 16390), puts steady load on it with
# loadgen, and meanwhile:
#   1. SIGKILLs each service in turn and starts it again;
#   2. restarts the broker;
#   3. stops Redis for CHAOS_OUTAGE seconds (15);
#   4. stops product-service for CHAOS_OUTAGE seconds: orders must get fast
#      503s while the breaker is open, and succeed again after;
#   5. holds an ACCESS EXCLUSIVE lock on payment-service's tables for
#      CHAOS_LOCK seconds (60; a stuck migration, a long vacuum) while the
#      broker serves: its consumer must wait and retry, never dead-letter,
#      and every order must still be charged;
#   6. SIGKILLs the second replica of order-, payment- and
#      notification-service at once (the stack runs two of each, and the
#      load's orders go to both order-services): the first replicas must
#      take over all their partitions and carry on (one relay and one
#      recovery loop left per database) until the second ones are back;
#   7. stops the services' PostgreSQL for CHAOS_PG_OUTAGE seconds (45; 15 in
#      the short run) while the broker serves: orders get fast 503s, and
#      every service is ready again by itself once it is back. The stack's
#      databases are on a PostgreSQL cluster of its own (port 15432, data in
#      a temporary folder); the broker's storage stays on the machine's.
# When the load stops and the sagas settle, `invariants` checks the five
# databases and the DLQ; the script prints the fault log, the load report and
# the invariants table, and exits 1 on any violation or on any 5xx answer to
# the load other than 503. Everything it started
# is stopped on exit.
#
#   scripts/chaos.sh                  full run (6 minutes of load)
#   CHAOS_SHORT=1 scripts/chaos.sh    short run for the test suite (~6 minutes):
#                                     kills order and payment, restarts the
#                                     broker, 5 s outages, a 20 s lock, the
#                                     second replicas killed, PostgreSQL
#                                     stopped for 15 s
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

# Its own Redis and PostgreSQL, so that stopping them touches nobody else's;
# the broker keeps its storage on the machine's PostgreSQL.
export REDIS_PORT=16390
export BROKER_PG_PORT=${PG_PORT:-5432} PG_PORT=15432
export MINISHOP_REPLICAS=2
side_stack chaos 18180 15151 19192
# Orders with no payment answer are cancelled after this; bounded settling.
export PAYMENT_TIMEOUT_SECS=${PAYMENT_TIMEOUT_SECS:-30}

SHORT=${CHAOS_SHORT:-}
if [ -n "$SHORT" ]; then
  LOAD_SECS=${CHAOS_LOAD_SECONDS:-180}; OUTAGE=${CHAOS_OUTAGE:-5}; KILL=(order-service payment-service)
  LOCK=${CHAOS_LOCK:-20}; PG_OUTAGE=${CHAOS_PG_OUTAGE:-15}
else
  LOAD_SECS=${CHAOS_LOAD_SECONDS:-360}; OUTAGE=${CHAOS_OUTAGE:-15}; LOCK=${CHAOS_LOCK:-60}
  PG_OUTAGE=${CHAOS_PG_OUTAGE:-45}
  KILL=(user-service product-service order-service payment-service notification-service)
fi
SEEDED_STOCK=100000
PROFILE=${MINISHOP_PROFILE:-dev}
case $PROFILE in dev) BIN=${CARGO_TARGET_DIR:-$ROOT/target}/debug ;; *) BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release ;; esac

# The stack's own PostgreSQL cluster (initdb refuses to run as root).
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
PG_DATA=${TMPDIR:-/tmp}/minishop-chaos-pg
pg_as() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
start_pg() {
  if [ ! -f "$PG_DATA/PG_VERSION" ]; then
    [ -n "$PG_BIN" ] || die "no PostgreSQL server binaries under /usr/lib/postgresql"
    mkdir -p "$PG_DATA"
    [ "$(id -u)" = 0 ] && chown postgres "$PG_DATA"
    pg_as "$PG_BIN/initdb" -D "$PG_DATA" -U "$PG_USER" --auth=trust -E UTF8 >/dev/null
  fi
  pg_as "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_DATA/server.log" -w -t 60 start \
    -o "-p $PG_PORT -k $PG_DATA -c listen_addresses=$PG_HOST -c max_connections=200 -c fsync=off" >/dev/null
}
stop_pg() { pg_as "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null; }

cleanup() {
  stop_bg loadgen >/dev/null 2>&1 || true
  "$ROOT/scripts/down.sh" >/dev/null 2>&1 || true
  stop_bg chaos-redis >/dev/null 2>&1 || true
  stop_pg 2>/dev/null || true
  rm -rf "$PG_DATA"
}
trap cleanup EXIT
trap 'echo "chaos.sh: line $LINENO failed: $BASH_COMMAND" >&2' ERR

FAULTS=$STATE_DIR/faults.log
: >"$FAULTS"
fault() { printf '%-52s %s\n' "$1" "$2" | tee -a "$FAULTS"; }

start_redis() {
  start_bg chaos-redis redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no
  wait_until 15 "Redis on $REDIS_PORT" redis-cli -p "$REDIS_PORT" ping >/dev/null
}

# Seconds (one decimal) since $1 (from `now`).
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

ready() { curl -fsS "http://127.0.0.1:$1/ready" >/dev/null 2>&1; }
restart() { "$ROOT/scripts/up.sh" >"$STATE_DIR/logs/up-again.log" 2>&1 || die "the stack did not come back; see $STATE_DIR/logs/up-again.log"; }

start_redis
stop_pg 2>/dev/null || true
rm -rf "$PG_DATA"
start_pg
log "bringing up the chaos stack from fresh databases ($PROFILE)"
side_stack_up
cargo build --profile "$PROFILE" -p loadgen --bins -q

START=$(date -u +%Y-%m-%dT%H:%M:%SZ)
# Steady, not saturating: faults, not overload, are what is tested (an
# overloaded saga times its payments out, which is correct but says nothing).
RATE=${CHAOS_RATE:-12}
log "steady load for ${LOAD_SECS}s (loadgen, open loop at $RATE ops/s)"
# An earlier run's log and report would pass for this run's start and result.
: >"$STATE_DIR/logs/loadgen.log"
rm -f "$STATE_DIR/load.json"
start_bg loadgen "$BIN/loadgen" --user-url "$USER_URL" --product-url "$PRODUCT_URL" \
  --order-url "$ORDER_URL,http://127.0.0.1:$(service_port order-service-2)" \
  --duration "$LOAD_SECS" --rate "$RATE" --concurrency 64 --users 8 --products 8 --stock "$SEEDED_STOCK" \
  --mix browse=15,view=15,login=5,order=40,order_multi=15,poll=10 --settle 180 --quiet \
  --json "$STATE_DIR/load.json"
wait_until 120 "loadgen to start its load" grep -q "open loop" "$STATE_DIR/logs/loadgen.log" \
  || { cat "$STATE_DIR/logs/loadgen.log"; die "loadgen did not start"; }
LOAD_STARTED=$SECONDS
sleep 5

# The restarted process has handled an event (its counter starts at 0):
# its consumer group gave it partitions and it is working through them.
consuming() {
  curl -fsS "http://127.0.0.1:$1/metrics" 2>/dev/null \
    | awk '/^kafka_events_consumed_total\{/ {s += $2} END {exit !(s > 0)}'
}

for name in "${KILL[@]}"; do
  kill -9 "$(cat "$(pid_file "$name")")"
  t=$(now); sleep 1; restart
  wait_until 60 "$name" ready "$(service_port "$name")" || die "$name did not come back"
  back="ready again after $(since "$t") s"
  case $name in order-service | payment-service | notification-service)
    wait_until 60 "$name to consume again" consuming "$(service_port "$name")" \
      || die "$name did not consume again within 60 s"
    back+=", consuming after $(since "$t") s" ;;
  esac
  fault "SIGKILL $name, restarted" "$back"
  sleep 3
done

"$ROOT/scripts/broker.sh" stop >/dev/null
t=$(now); sleep 2
"$ROOT/scripts/broker.sh" start durable >/dev/null
fault "broker stopped and restarted (durable storage)" "back after $(since "$t") s"
sleep 3

stop_bg chaos-redis >/dev/null
t=$(now); sleep "$OUTAGE"; start_redis
fault "Redis stopped for ${OUTAGE}s" "back after $(since "$t") s"
sleep 3

# The breaker opens on the failures of the load's own orders: the load
# must still be running through this outage, or the check below would
# only see one order's retries.
[ $((SECONDS - LOAD_STARTED + 3 + OUTAGE)) -lt "$LOAD_SECS" ] \
  || die "the load ($LOAD_SECS s) ends before the product-service outage does; raise CHAOS_LOAD_SECONDS"
stop_bg product-service >/dev/null
t=$(now)
# Orders while product-service is down: 503 at once, not after timeouts.
order_code() {
  curl -s -o /dev/null -w '%{http_code} %{time_total}\n' -X POST "$ORDER_URL/api/v1/orders" \
    -H "Authorization: Bearer $1" -H 'Content-Type: application/json' \
    -d '{"product_id": 1, "quantity": 1}'
}
login=$(admin_token "$USER_URL") || die "the admin cannot log in at $USER_URL"
sleep 3  # let the breaker open on the load's failures
read -r code secs < <(order_code "$login")
fault "product-service down: POST /orders" "HTTP $code in ${secs}s"
[ "$code" = 503 ] && awk -v s="$secs" 'BEGIN { exit !(s < 1.0) }' \
  || die "with product-service down, an order got $code in ${secs}s (expected a fast 503)"
sleep "$((OUTAGE > 3 ? OUTAGE - 3 : 0))"
restart
wait_until 60 product-service ready "$(service_port product-service)" || die "product-service did not come back"
fault "product-service stopped for ${OUTAGE}s" "back after $(since "$t") s"

# A lock that stalls payment-service's database while the broker serves:
# every order_created of the window fails on the statement timeout and must
# wait, not be dead-lettered. The psql session holds the lock, then ends.
[ $((SECONDS - LOAD_STARTED + 3 + LOCK)) -lt "$LOAD_SECS" ] \
  || die "the load ($LOAD_SECS s) ends before the lock ($LOCK s) does; raise CHAOS_LOAD_SECONDS"
sleep 3
# The longest a partition of payment-service waited, sampled from its metrics.
waited_max() {
  curl -fsS "http://127.0.0.1:$(service_port payment-service)/metrics" 2>/dev/null \
    | awk '/^kafka_consumer_partition_waiting_seconds\{/ { if ($2 > m) m = $2 } END { printf "%.0f", m }'
}
t=$(now)
psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d "${DB_PREFIX}paymentdb" -qtA \
  -c "BEGIN; LOCK TABLE payments, cancelled_orders, processed_events, outbox IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep($LOCK); COMMIT;" \
  >/dev/null &
lock_pid=$!
longest=0
while alive "$lock_pid"; do
  w=$(waited_max); [ "${w:-0}" -gt "$longest" ] && longest=$w
  sleep 1
done
wait "$lock_pid" || die "the lock session failed"
fault "payment-service tables locked (ACCESS EXCLUSIVE) ${LOCK}s" "released after $(since "$t") s, a partition waited up to ${longest} s"

terminal_orders() {
  psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d "${DB_PREFIX}orderdb" -qtAc \
    "SELECT count(*) FROM orders WHERE status IN ('paid', 'failed', 'cancelled')"
}

# Two replicas share each saga group's partitions; one of each is SIGKILLed
# and the other must take them all over and carry on alone.
[ $((SECONDS - LOAD_STARTED + 45)) -lt "$LOAD_SECS" ] \
  || die "the load ($LOAD_SECS s) ends before the replicas' kill does; raise CHAOS_LOAD_SECONDS"
declare -A total
for name in "${SAGA_SERVICES[@]}"; do
  wait_until 60 "$name-2 to hold partitions" has_partitions "$name-2" some \
    || die "the second $name replica holds no partition: the group did not split"
  wait_until 30 "$name to hold partitions" has_partitions "$name" some \
    || die "the first $name replica holds no partition: the group did not split"
  total[$name]=$(($(assigned "$name") + $(assigned "$name-2")))
done
before=$(terminal_orders)
for name in "${SAGA_SERVICES[@]}"; do kill -9 "$(cat "$(pid_file "$name-2")")"; done
t=$(now)
for name in "${SAGA_SERVICES[@]}"; do
  wait_until 60 "$name to take over all ${total[$name]} partitions" has_partitions "$name" "${total[$name]}" \
    || die "$name did not take over the killed replica's partitions within 60 s"
  fault "SIGKILL $name-2: $name holds all ${total[$name]}" "after $(since "$t") s"
done
sleep 5
alone=$(($(terminal_orders) - before))
[ "$alone" -gt 0 ] || die "no order ended while the second replicas were down"
restart
for name in "${SAGA_SERVICES[@]}"; do
  wait_until 60 "$name-2 to share the partitions again" has_partitions "$name-2" some \
    || die "the restarted $name-2 got no partition back"
done
fault "second replicas down, then restarted" "$alone orders ended meanwhile; sharing again $(since "$t") s after the kill"
sleep 3

every_service_ready() {
  local name
  local port
  for name in "${INSTANCES[@]}"; do
    port=$(service_port "$name") || continue # not a service (Prometheus)
    ready "$port" || return 1
  done
}
if [ -n "${PG_OUTAGE:-}" ]; then
  [ $((SECONDS - LOAD_STARTED + PG_OUTAGE + 10)) -lt "$LOAD_SECS" ] \
    || die "the load ($LOAD_SECS s) ends before the PostgreSQL outage does; raise CHAOS_LOAD_SECONDS"
  sleep 3
  stop_pg
  t=$(now)
  sleep 3  # the services' probes notice
  read -r code secs < <(order_code "$login")
  [ "$code" = 503 ] && awk -v s="$secs" 'BEGIN { exit !(s < 1.0) }' \
    || die "with PostgreSQL down, an order got $code in ${secs}s (expected a fast 503)"
  sleep "$((PG_OUTAGE - 3))"
  start_pg
  back=$(now)
  wait_until 120 "every service to be ready again" every_service_ready || die "the stack did not recover from the PostgreSQL outage"
  fault "PostgreSQL stopped ${PG_OUTAGE}s (broker serving)" "POST /orders: HTTP $code in ${secs}s; all ready $(since "$back") s after it was back"
fi

log "waiting for the load to end and its orders to settle"
while is_running loadgen; do sleep 2; done
cat "$STATE_DIR/logs/loadgen.log"
jq -e '.total_requests > 0' "$STATE_DIR/load.json" >/dev/null || die "loadgen reported nothing"

# Every order terminal (the payment timeout bounds it), the outbox drained.
settled() {
  orders_settled && psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d "${DB_PREFIX}orderdb" -qtAc \
    "SELECT count(*) FROM outbox WHERE sent_at IS NULL" | grep -qx 0
}
wait_until 180 "every order to settle" settled || log "some orders did not settle: the checker will say which"
sleep 5  # the last events reach notification-service

echo
echo "faults injected:"
cat "$FAULTS"
echo
# A fault may cost a request its connection (io) or get it a 503 with
# Retry-After; any other 5xx is a bug the faults exposed.
other_5xx=$(jq -r '[.operations[] | .op as $op | .errors | to_entries[]
  | select((.key | test("^5[0-9][0-9]$")) and .key != "503") | "\($op) \(.value)x\(.key)"] | join(", ")' \
  "$STATE_DIR/load.json")
if [ -n "$other_5xx" ]; then
  echo "✗ the load got 5xx answers other than 503: $other_5xx (logs: $STATE_DIR/logs/)"
else
  echo "✓ the load got no 5xx answer but 503"
fi
echo
url() { echo "postgres://$PG_USER@$PG_HOST:$PG_PORT/${DB_PREFIX}$1"; }
rc=0
# shellcheck disable=SC2046
env $(broker_login_env minishop-admin) "$BIN/invariants" --product-db "$(url productdb)" --order-db "$(url orderdb)" \
  --payment-db "$(url paymentdb)" --notification-db "$(url notificationdb)" \
  --brokers "$BROKER_ADDR" --since "$START" --seeded-prefix "loadgen " --seeded-stock "$SEEDED_STOCK" \
  --json "$STATE_DIR/invariants.json" || rc=$?
[ -z "$other_5xx" ] || rc=1
exit "$rc"
