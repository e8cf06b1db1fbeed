#!/usr/bin/env bash
# The local Kafka-protocol broker: Nisshi (a Kafka-API broker in Rust).
#   scripts/broker.sh install          build it once into $CACHE_DIR (8 to 20 min cold on 2 cores)
#   scripts/broker.sh start [durable|memory]
#                                      durable (default): data in PostgreSQL database `nisshi`,
#                                      and every client must log in (SASL/SCRAM-SHA-512) with
#                                      the credentials scripts/keys.sh made (BROKER_AUTH=none: no login)
#                                      memory: throwaway storage, which can't hold logins: no login
#   scripts/broker.sh stop | status
set -euo pipefail
source "$(dirname "$0")/lib.sh"

install() {
  if [ -x "$NISSHI_BIN" ]; then return 0; fi
  log "building the broker (nisshi $NISSHI_VERSION) into $CACHE_DIR; this takes 8 to 20 minutes once per machine"
  cargo install --locked --ignore-rust-version nisshi --version "$NISSHI_VERSION" \
    --no-default-features --features "$NISSHI_FEATURES" --root "$NISSHI_ROOT"
}

start() {
  local mode=${1:-durable} storage
  if is_running broker; then log "broker already running (pid $(cat "$(pid_file broker)"))"; return 0; fi
  if port_open "$BROKER_ADDR"; then die "something else listens on $BROKER_ADDR"; fi
  install
  case $mode in
    durable) ensure_database "$NISSHI_DB" "$BROKER_PG_PORT"; storage="postgres://$PG_USER@$PG_HOST:$BROKER_PG_PORT/$NISSHI_DB?sslmode=disable" ;;
    memory) storage="memory://nisshi/" ;;
    *) die "unknown broker mode $mode (durable or memory)" ;;
  esac
  local auth=()
  if [ "$mode" = durable ] && [ "$(broker_auth)" = scram ]; then
    setup_logins "$storage"
    auth=(--authentication)
  fi
  log "starting the broker on $BROKER_ADDR ($mode storage${auth:+, SCRAM logins required})"
  start_bg broker "$NISSHI_BIN" broker --storage-engine "$storage" --listener-url "tcp://$BROKER_ADDR" \
    --advertised-listener-url "tcp://$BROKER_ADDR" "${auth[@]}"
  wait_until 60 "broker on $BROKER_ADDR" serving broker "$BROKER_ADDR" \
    || die "the broker did not start; see $STATE_DIR/logs/broker.log"
  # The broker's own tool cannot log in: with logins required, the topics
  # were made during setup_logins.
  [ ${#auth[@]} -gt 0 ] || create_topics
}

# The bundled nisshi tool connects without logging in, so the logins (and
# the topics) are written through a broker on the same storage that asks
# for none, on a loopback port nobody else knows, stopped before the real
# one starts. Upserts: running it again changes only changed passwords.
setup_logins() {
  local port=$((20000 + RANDOM % 20000)) user
  "$ROOT/scripts/keys.sh" >/dev/null
  log "writing the broker logins (${BROKER_USERS[*]})"
  start_bg broker-setup "$NISSHI_BIN" broker --storage-engine "$1" --listener-url "tcp://127.0.0.1:$port" \
    --advertised-listener-url "tcp://127.0.0.1:$port"
  wait_until 60 "broker set-up on 127.0.0.1:$port" serving broker-setup "127.0.0.1:$port" \
    || die "the broker's set-up did not start; see $STATE_DIR/logs/broker-setup.log"
  for user in "${BROKER_USERS[@]}"; do
    "$NISSHI_BIN" user create --broker "tcp://127.0.0.1:$port" "$user" "$(cat "$(broker_password_file "$user")")" \
      >/dev/null || { stop_bg broker-setup; die "could not write the broker login $user"; }
  done
  BROKER_ADDR=127.0.0.1:$port create_topics
  stop_bg broker-setup >/dev/null
}

# (The connection is loopback-only, so no TLS: a local PostgreSQL's
# certificate is usually issued for "localhost", not 127.0.0.1.)

# The saga's topics, with explicit partition counts (the broker would
# auto-create them with its own default): events keyed by order id spread
# over $TOPIC_PARTITIONS partitions; the dead-letter topic needs no parallelism.
create_topics() {
  local topic=${KAFKA_TOPIC:-order_events} existing
  existing=$("$NISSHI_BIN" topic list --broker "tcp://$BROKER_ADDR" | jq -r '.[].name') \
    || die "cannot list the broker's topics"
  create_topic "$topic" "${TOPIC_PARTITIONS:-6}" "$existing"
  create_topic "$topic.dlq" 1 "$existing"
}

create_topic() {
  if grep -qxF "$1" <<<"$3"; then return 0; fi
  "$NISSHI_BIN" topic create "$1" --partitions "$2" --broker "tcp://$BROKER_ADDR" --silent \
    || die "could not create topic $1"
  log "created topic $1 ($2 partitions)"
}

case ${1:-} in
  install) install ;;
  start) start "${2:-durable}" ;;
  topics) create_topics ;;
  stop) stop_bg broker ;;
  status) if is_running broker; then echo "running (pid $(cat "$(pid_file broker)"))"; else echo stopped; exit 1; fi ;;
  *) die "usage: $0 install|start [durable|memory]|stop|status" ;;
esac
