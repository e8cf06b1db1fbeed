# Shared helpers of the scripts in this folder (sourced, not run).
# shellcheck shell=bash

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/roster.sh
source "$ROOT/scripts/roster.sh"
# Runtime state of the local stack (pids, logs, keys): inside the repo, git-ignored.
STATE_DIR=${MINISHOP_STATE_DIR:-$ROOT/.local}
# Things built once per machine and reused by every checkout (the broker binary).
CACHE_DIR=${MINISHOP_CACHE_DIR:-$HOME/.cache/minishop}
# Where scripts/deps.sh installs AsyncAPI's parser (scripts/asyncapi-check.mjs).
export ASYNCAPI_PARSER_DIR=$CACHE_DIR/asyncapi-parser-3.6.6
PG_HOST=${PG_HOST:-127.0.0.1}
PG_PORT=${PG_PORT:-5432}
PG_USER=${PG_USER:-postgres}
REDIS_HOST=${REDIS_HOST:-127.0.0.1}
REDIS_PORT=${REDIS_PORT:-6379}
BROKER_ADDR=${BROKER_ADDR:-127.0.0.1:9092}
# The Kubernetes versions deploy/k8s is validated against (scripts/check-deploy.sh).
K8S_VERSIONS=${K8S_VERSIONS:-1.30.0 1.31.0 1.32.0}
NISSHI_VERSION=0.8.1
# Only the storage the project uses: PostgreSQL (durable) and memory (object_store's
# in-memory store, behind the "dynostore" feature). The default features add libSQL,
# Turso and SlateDB, which triple the build.
NISSHI_FEATURES=postgres,dynostore
NISSHI_ROOT=$CACHE_DIR/nisshi-$NISSHI_VERSION-${NISSHI_FEATURES//,/-}
NISSHI_BIN=$NISSHI_ROOT/bin/nisshi
# A second stack can run beside `make up`'s (scripts/chaos.sh does) with its
# own MINISHOP_STATE_DIR, DB_PREFIX, ports, broker address and Redis port.
DB_PREFIX=${DB_PREFIX:-}
DATABASES=()
for entry in "${ROSTER[@]}"; do
  read -r _ _ db _ <<<"$entry"
  DATABASES+=("$DB_PREFIX$db")
done
# The services listen on HTTP_PORT_BASE + their offset in scripts/roster.sh.
HTTP_PORT_BASE=${HTTP_PORT_BASE:-8080}
ORDER_GRPC_PORT=${ORDER_GRPC_PORT:-50051}
# Where web receives the services' spans (OTLP/gRPC) for its trace viewer.
OTLP_PORT=${OTLP_PORT:-4317}
# Prometheus and Alertmanager for the console (1: started by up.sh).
MONITORING=${MINISHOP_MONITORING:-1}
PROMETHEUS_PORT=${PROMETHEUS_PORT:-9090}
ALERTMANAGER_PORT=${ALERTMANAGER_PORT:-9093}
PRODUCT_GRPC_PORT=${PRODUCT_GRPC_PORT:-50052}
# 1, or 2 for a second replica of each saga service (NAME-2, scripts/up.sh).
REPLICAS=${MINISHOP_REPLICAS:-1}
case $REPLICAS in 1 | 2) ;; *) echo "error: MINISHOP_REPLICAS must be 1 or 2" >&2; exit 1 ;; esac
# Every instance scripts/up.sh may start, in the order scripts/down.sh
# stops them: the second replicas, Prometheus and Alertmanager, then web
# and the roster backwards.
INSTANCES=("${SAGA_SERVICES[@]/%/-2}")
INSTANCES+=(prometheus alertmanager)
for ((i = ${#EVERYTHING[@]} - 1; i >= 0; i--)); do INSTANCES+=("${EVERYTHING[$i]%% *}"); done
unset entry db i
# The database of the broker's durable storage, and the PostgreSQL port it is
# on (the services' own by default; scripts/chaos.sh keeps it apart, so that
# stopping the services' PostgreSQL leaves the broker serving).
NISSHI_DB=${NISSHI_DB:-nisshi}
# The broker's logins: one per service and web (the console reads the topic),
# and one for the operator tools.
BROKER_USERS=(user-service product-service order-service payment-service notification-service web minishop-admin)
# broker_auth: scram (a durable broker requires logins) or none (BROKER_AUTH=none).
broker_auth() { echo "${BROKER_AUTH:-scram}"; }
# broker_password_file USER: where scripts/keys.sh put USER's broker password.
broker_password_file() { echo "$STATE_DIR/secrets/kafka_$1"; }
# broker_login_env USER: the variables that make a client log in as USER to
# the local broker, when it requires logins (empty otherwise).
broker_login_env() {
  if [ "$(broker_auth)" = scram ] && [ "${BROKER_MODE:-durable}" = durable ]; then
    echo "KAFKA_SASL_USERNAME=$1 KAFKA_SASL_PASSWORD_FILE=$(broker_password_file "$1")"
  fi
}
BROKER_PG_PORT=${BROKER_PG_PORT:-$PG_PORT}

mkdir -p "$STATE_DIR/pids" "$STATE_DIR/logs"

log() { printf '\033[1m==>\033[0m %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# (No NOTICEs: "database ... does not exist, skipping" is the expected case.)
psql_admin() { PGOPTIONS="-c client_min_messages=warning" psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d postgres -v ON_ERROR_STOP=1 -qtA "$@"; }

# Creates database $1 (on port $2, default PG_PORT) unless it exists.
ensure_database() {
  local exists port=${2:-$PG_PORT}
  exists=$(PG_PORT=$port psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$1'")
  [ "$exists" = 1 ] || PG_PORT=$port psql_admin -c "CREATE DATABASE \"$1\"" >/dev/null
}

pid_file() { echo "$STATE_DIR/pids/$1.pid"; }

# True when process $1 exists and is not a zombie: a SIGKILLed service whose
# parent has not reaped it yet still answers `kill -0`.
alive() {
  local state
  kill -0 "$1" 2>/dev/null || return 1
  state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

# True when the process recorded in the pid file of $1 is alive.
is_running() {
  local f; f=$(pid_file "$1")
  [ -f "$f" ] && alive "$(cat "$f")"
}

# start_bg NAME COMMAND...: runs COMMAND in the background (own session),
# logging to $STATE_DIR/logs/NAME.log, and records its pid.
start_bg() {
  local name=$1; shift
  nohup setsid "$@" >>"$STATE_DIR/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$(pid_file "$name")"
}

# Stops the process of pid file $1 (TERM, then KILL after 15 s) and removes the file.
stop_bg() {
  local name=$1 f pid
  f=$(pid_file "$name")
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then
      log "$name did not stop in 15 s, killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    log "stopped $name (pid $pid)"
  fi
  rm -f "$f"
}

# wait_until SECONDS DESCRIPTION COMMAND...: retries COMMAND until it
# succeeds; exit code 2 from COMMAND means "give up now".
wait_until() {
  local secs=$1 what=$2 rc; shift 2
  local deadline=$((SECONDS + secs))
  while true; do
    rc=0; "$@" >/dev/null 2>&1 || rc=$?
    [ $rc -eq 0 ] && break
    [ $rc -ne 2 ] && [ $SECONDS -lt $deadline ] || return 1
    sleep 0.3
  done
  log "$what is up"
}

# serving NAME ADDR: the process of NAME answers on ADDR (2 if it has died).
serving() {
  is_running "$1" || return 2
  port_open "$2"
}

port_open() { (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }

# side_stack NAME HTTP_PORT_BASE ORDER_GRPC_PORT BROKER_PORT: from here on this
# script works on a throwaway stack of its own beside `make up`'s
# (scripts/chaos.sh, scripts/bench.sh): state in .local/NAME, databases
# NAME_*, the five services on HTTP_PORT_BASE+0..4, gRPC on ORDER_GRPC_PORT
# (order) and the next port (product), the broker on BROKER_PORT; USER_URL,
# PRODUCT_URL, ORDER_URL, PAYMENT_URL and NOTIFICATION_URL point at it. Its
# load comes from one address, so the rate limits are lifted. Refuses to take over
# one that is still running.
side_stack() {
  local name=$1 svc
  export MINISHOP_STATE_DIR=$ROOT/.local/$name DB_PREFIX=${name}_ CACHE_KEY_PREFIX=$name
  export HTTP_PORT_BASE=$2 ORDER_GRPC_PORT=$3 PRODUCT_GRPC_PORT=$(($3 + 1))
  export BROKER_ADDR=127.0.0.1:$4 NISSHI_DB=${name}_nisshi OTLP_PORT=$(($2 + 9)) MINISHOP_MONITORING=0
  roster_urls "$2" force
  export RATE_LIMIT_AUTH_PER_MIN=1000000 RATE_LIMIT_AUTH_BURST=100000
  export RATE_LIMIT_WRITES_PER_MIN=1000000 RATE_LIMIT_WRITES_BURST=100000
  export RUST_LOG=${RUST_LOG:-warn}
  # Re-read these settings with the stack's own values.
  source "$ROOT/scripts/lib.sh"
  for svc in "${INSTANCES[@]}" broker; do
    is_running "$svc" && die "a $name stack is already running; stop it with: MINISHOP_STATE_DIR=$MINISHOP_STATE_DIR scripts/down.sh"
  done
  return 0
}

# side_stack_up: the side stack from fresh databases, up and ready, with its
# admin's credentials exported.
side_stack_up() {
  local db
  for db in "${DATABASES[@]}"; do
    psql_admin -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null
  done
  PG_PORT=$BROKER_PG_PORT psql_admin -c "DROP DATABASE IF EXISTS \"$NISSHI_DB\" WITH (FORCE)" >/dev/null
  "$ROOT/scripts/up.sh" >"$STATE_DIR/logs/up.log" 2>&1 \
    || { tail -n 20 "$STATE_DIR/logs/up.log"; die "the stack in $STATE_DIR did not start"; }
  # shellcheck disable=SC1091
  source "$STATE_DIR/admin.env"
  export ADMIN_EMAIL ADMIN_PASSWORD
}

# own_stack_if_asked WHAT NAME HTTP_PORT_BASE ORDER_GRPC_PORT BROKER_PORT [ARG]:
# with ARG --own-stack, brings up a side stack NAME (memory broker) for WHAT,
# stopped when the script exits; without ARG, nothing (the running stack).
own_stack_if_asked() {
  local what=$1 name=$2
  case ${6:-} in
    "") return 0 ;;
    --own-stack) ;;
    *) die "usage: $0 [--own-stack]" ;;
  esac
  side_stack "$name" "$3" "$4" "$5"
  export BROKER_MODE=memory
  trap '"$ROOT/scripts/down.sh" >/dev/null 2>&1 || true' EXIT
  log "bringing up a stack for $what (.local/$name)"
  side_stack_up
}

# Partitions assigned to an instance's consumer: the series of its lag
# gauge, measured every KAFKA_LAG_INTERVAL_MS (5 s) for its assignment.
assigned() {
  curl -fsS "http://127.0.0.1:$(service_port "$1")/metrics" 2>/dev/null \
    | awk '/^kafka_consumer_lag\{/ {n++} END {print n + 0}'
}
# has_partitions NAME N: NAME's consumer holds N partitions (N = "some": any).
has_partitions() {
  local n; n=$(assigned "$1")
  if [ "$2" = some ]; then [ "$n" -gt 0 ]; else [ "$n" = "$2" ]; fi
}

# orders_settled: no order of this stack is pending or holding stock.
orders_settled() {
  psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d "${DB_PREFIX}orderdb" -qtAc \
    "SELECT count(*) FROM orders WHERE status = 'pending' OR stock IN ('unknown', 'held')" | grep -qx 0
}

# admin_token USER_URL: prints a token of $ADMIN_EMAIL / $ADMIN_PASSWORD.
# Sign-ins are rate-limited per address, so a 429 is waited out (up to a minute).
admin_token() {
  local body out status
  body=$(jq -n --arg e "$ADMIN_EMAIL" --arg p "$ADMIN_PASSWORD" '{email: $e, password: $p}')
  for _ in $(seq 1 30); do
    out=$(curl -sS -X POST "$1/api/v1/login" -H 'Content-Type: application/json' \
      --data "$body" -w '\n%{http_code}') || return 1
    status=${out##*$'\n'}
    case $status in
      200) jq -er .token <<<"${out%$'\n'*}"; return ;;
      429) sleep 2 ;;
      *) return 1 ;;
    esac
  done
  return 1
}
