#!/usr/bin/env bash
# Brings the whole local stack up as processes (no Docker): PostgreSQL and
# Redis (started if needed), the five databases, a JWT key pair, the broker,
# the five services and web, Prometheus and Alertmanager; waits until every
# /ready answers and prints the URLs.
# Running it again only starts what is not running. `make down` stops it.
#   MINISHOP_PROFILE=release scripts/up.sh    optimised build (for benchmarks)
#   BROKER_MODE=memory scripts/up.sh          throwaway broker storage
#   BIND_ADDR=0.0.0.0 scripts/up.sh           listen on every interface (by default
#       only on 127.0.0.1: a laptop's APIs, /metrics and /docs stay off its network)
#   MINISHOP_REPLICAS=2 scripts/up.sh         a second replica of order-,
#       payment- and notification-service (HTTP on the first's port + 10,
#       order-service's gRPC on ORDER_GRPC_PORT + 2): they share the
#       databases and consumer groups, each runs its relay and loops
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

PROFILE=${MINISHOP_PROFILE:-dev}
case $PROFILE in
  dev) target_dir=debug ;;
  release) target_dir=release ;;
  *) die "MINISHOP_PROFILE must be dev or release" ;;
esac
BIN_DIR=${CARGO_TARGET_DIR:-$ROOT/target}/$target_dir
# The address every service's HTTP and gRPC listen on.
BIND_ADDR=${BIND_ADDR:-127.0.0.1}

"$ROOT/scripts/deps.sh"
"$ROOT/scripts/keys.sh"
# shellcheck disable=SC1091
source "$STATE_DIR/admin.env"
for db in "${DATABASES[@]}"; do ensure_database "$db"; done
log "databases ready: ${DATABASES[*]}"
"$ROOT/scripts/broker.sh" start "${BROKER_MODE:-durable}"

log "building the services ($PROFILE profile)"
cargo build --profile "$PROFILE" --bins

# What an instance needs beyond the common environment.
extra_env() {
  case $1 in
    # web (on this host) passes each visitor's address on with their sign-ins.
    user-service) echo "ADMIN_EMAIL=$ADMIN_EMAIL ADMIN_PASSWORD=$ADMIN_PASSWORD TRUST_FORWARDED_FOR=127.0.0.1" ;;
    product-service) echo "GRPC_ADDR=$BIND_ADDR:$PRODUCT_GRPC_PORT" ;;
    order-service) echo "GRPC_ADDR=$BIND_ADDR:$ORDER_GRPC_PORT PRODUCT_GRPC_URL=https://127.0.0.1:$PRODUCT_GRPC_PORT" ;;
    order-service-2) echo "GRPC_ADDR=$BIND_ADDR:$((ORDER_GRPC_PORT + 2)) PRODUCT_GRPC_URL=https://127.0.0.1:$PRODUCT_GRPC_PORT" ;;
    web) web_env ;;
  esac
}

# web calls every service, checks every instance, and receives their spans.
web_env() {
  local entry name var instances=()
  for entry in "${ROSTER[@]}"; do
    read -r name _ _ var <<<"$entry"
    printf '%s_URL=http://127.0.0.1:%s ' "$(tr 'a-z-' 'A-Z_' <<<"$name")" "$(service_port "$name")"
  done
  for name in "${names[@]}"; do
    [ "$name" = web ] || instances+=("$name=http://127.0.0.1:$(service_port "$name")")
  done
  local IFS=, prometheus=""
  if [ "$MONITORING" = 1 ]; then prometheus="PROMETHEUS_URL=http://127.0.0.1:$PROMETHEUS_PORT"; fi
  # One line: the caller reads the first only.
  echo "WEB_INSTANCES=${instances[*]} OTLP_ADDR=127.0.0.1:$OTLP_PORT OTLP_TOKEN_FILE=$STATE_DIR/secrets/otlp_token $prometheus"
}

# name  http-port  database  extra environment, from scripts/roster.sh
names=()
for entry in "${ROSTER[@]}"; do names+=("${entry%% *}"); done
[ "$REPLICAS" = 2 ] && names+=("${SAGA_SERVICES[@]/%/-2}")
names+=(web)
SERVICES=()
for name in "${names[@]}"; do
  SERVICES+=("$name $(service_port "$name") $DB_PREFIX$(roster_field "$name" 2) $(extra_env "$name")")
done

# STATIC_MEMBERSHIP=1 makes each consumer a static group member named
# after its service (one instance each here). Off by default: under
# saturation the local broker's coordinator stalled past the session
# timeout, and the static member's rejoin was fenced for good (BENCHMARKS.md).
for entry in "${SERVICES[@]}"; do
  read -r name port db extra <<<"$entry"
  if [ "${STATIC_MEMBERSHIP:-0}" = 1 ]; then extra+=" KAFKA_GROUP_INSTANCE_ID=$name-0"; fi
  if is_running "$name"; then
    log "$name already running (pid $(cat "$(pid_file "$name")"))"
    continue
  fi
  if port_open "127.0.0.1:$port"; then die "port $port is taken; is another $name running?"; fi
  # shellcheck disable=SC2086,SC2046
  start_bg "$name" env \
    HTTP_ADDR="$BIND_ADDR:$port" \
    DATABASE_URL="postgres://$PG_USER@$PG_HOST:$PG_PORT/$db" \
    REDIS_URL="redis://$REDIS_HOST:$REDIS_PORT" \
    KAFKA_BROKERS="$BROKER_ADDR" \
    JWT_PUBLIC_KEY_FILE="$STATE_DIR/keys/jwt_public.pem" \
    JWT_PRIVATE_KEY_FILE="$STATE_DIR/keys/jwt_private.pem" \
    USER_SERVICE_URL="http://127.0.0.1:$(service_port user-service)" \
    TLS_CA_FILE="$STATE_DIR/keys/tls/ca.pem" \
    TLS_CERT_FILE="$STATE_DIR/keys/tls/${name%-[0-9]}.pem" \
    TLS_KEY_FILE="$STATE_DIR/keys/tls/${name%-[0-9]}-key.pem" \
    EVENT_SIGNING_KEY_FILE="$STATE_DIR/keys/events/${name%-[0-9]}-key.pem" \
    EVENT_KEYS_FILE="$STATE_DIR/keys/events/keyring" \
    $(broker_login_env "${name%-[0-9]}") \
    OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$OTLP_PORT" \
    OTEL_EXPORTER_OTLP_HEADERS="x-otlp-token=$(cat "$STATE_DIR/secrets/otlp_token")" \
    RUST_LOG="${RUST_LOG:-info}" \
    $extra \
    "$BIN_DIR/${name%-[0-9]}"
  log "started $name (pid $(cat "$(pid_file "$name")"), log $STATE_DIR/logs/$name.log)"
done

# ready NAME PORT: NAME's /ready answers 200 (2 if the process has died).
ready() {
  is_running "$1" || return 2
  curl -fsS "http://127.0.0.1:$2/ready"
}

for entry in "${SERVICES[@]}"; do
  read -r name port _ <<<"$entry"
  if ! wait_until 90 "$name" ready "$name" "$port"; then
    tail -n 20 "$STATE_DIR/logs/$name.log" >&2 || true
    die "$name did not become ready; see $STATE_DIR/logs/$name.log"
  fi
done

# Prometheus and Alertmanager (Debian's packages) with the top-level
# prometheus.yml, for the console's charts and alerts (MINISHOP_MONITORING=0:
# not started; side stacks don't).
if [ "$MONITORING" = 1 ]; then
  prom_dir=$STATE_DIR/prometheus
  "$ROOT/scripts/prometheus-config.sh" "$prom_dir"
  for name in prometheus alertmanager; do
    port=$PROMETHEUS_PORT; [ "$name" = alertmanager ] && port=$ALERTMANAGER_PORT
    if is_running "$name"; then continue; fi
    if port_open "127.0.0.1:$port"; then
      log "warning: something else listens on 127.0.0.1:$port; $name not started"
      continue
    fi
    case $name in
      prometheus)
        start_bg prometheus prometheus --config.file="$prom_dir/prometheus.yml" \
          --storage.tsdb.path="$prom_dir/data" --storage.tsdb.retention.time=2d \
          --web.listen-address="$BIND_ADDR:$port" ;;
      alertmanager)
        start_bg alertmanager prometheus-alertmanager \
          --config.file="$ROOT/deploy/alertmanager/alertmanager.yml" \
          --storage.path="$STATE_DIR/alertmanager" --cluster.listen-address= \
          --web.listen-address="$BIND_ADDR:$port" ;;
    esac
    wait_until 30 "$name" serving "$name" "127.0.0.1:$port" \
      || log "warning: $name did not start; see $STATE_DIR/logs/$name.log"
  done
fi

grpc_of() {
  case $1 in
    product-service) echo "   gRPC 127.0.0.1:$PRODUCT_GRPC_PORT" ;;
    order-service) echo "   gRPC 127.0.0.1:$ORDER_GRPC_PORT" ;;
    order-service-2) echo "   gRPC 127.0.0.1:$((ORDER_GRPC_PORT + 2))" ;;
  esac
}
monitoring_hint() {
  [ "$MONITORING" = 1 ] || return 0
  printf '\n  Prometheus             http://127.0.0.1:%s   Alertmanager http://127.0.0.1:%s' "$PROMETHEUS_PORT" "$ALERTMANAGER_PORT"
}
login_hint() {
  local login
  login=$(broker_login_env minishop-admin)
  [ -z "$login" ] || printf '\n  broker login (tools)   %s' "$login"
}
echo
echo "minishop is up."
for entry in "${SERVICES[@]}"; do
  read -r name port _ <<<"$entry"
  [ "$name" = web ] && continue
  printf '  %-22s http://127.0.0.1:%s   docs http://127.0.0.1:%s/docs%s\n' "$name" "$port" "$port" "$(grpc_of "$name")"
done
web_port=$(service_port web)
printf '  %-22s http://127.0.0.1:%s   saga console http://127.0.0.1:%s/console\n' "storefront (web)" "$web_port" "$web_port"
cat <<INFO
  gRPC                   TLS with the CA $STATE_DIR/keys/tls/ca.pem (server names
                         product-service, order-service); product-service also
                         wants a client certificate: order-service's for stock calls
  Kafka broker           $BROKER_ADDR (nisshi)$(login_hint)$(monitoring_hint)
  admin login            $ADMIN_EMAIL / $ADMIN_PASSWORD   (from $STATE_DIR/admin.env)
  logs                   $STATE_DIR/logs/
Stop everything with: make down
INFO
