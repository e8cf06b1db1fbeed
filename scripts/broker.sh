#!/usr/bin/env bash
# The local Kafka-protocol broker: Nisshi (a Kafka-API broker in Rust).
#   scripts/broker.sh install          build it once into $CACHE_DIR (about 8 min cold)
#   scripts/broker.sh start [durable|memory]
#                                      durable (default): data in PostgreSQL database `nisshi`
#   scripts/broker.sh stop | status
set -euo pipefail
source "$(dirname "$0")/lib.sh"

install() {
  if [ -x "$NISSHI_BIN" ]; then return 0; fi
  log "building the broker (nisshi $NISSHI_VERSION) into $CACHE_DIR; this takes about 8 minutes once per machine"
  cargo install --locked --ignore-rust-version nisshi --version "$NISSHI_VERSION" \
    --root "$CACHE_DIR/nisshi-$NISSHI_VERSION"
}

start() {
  local mode=${1:-durable} storage
  if is_running broker; then log "broker already running (pid $(cat "$(pid_file broker)"))"; return 0; fi
  if port_open "$BROKER_ADDR"; then die "something else listens on $BROKER_ADDR"; fi
  install
  case $mode in
    durable) ensure_database nisshi; storage="postgres://$PG_USER@$PG_HOST:$PG_PORT/nisshi" ;;
    memory) storage="memory://nisshi/" ;;
    *) die "unknown broker mode $mode (durable or memory)" ;;
  esac
  log "starting the broker on $BROKER_ADDR ($mode storage)"
  start_bg broker "$NISSHI_BIN" broker --storage-engine "$storage" --listener-url "tcp://$BROKER_ADDR"
  wait_until 60 "broker on $BROKER_ADDR" port_open "$BROKER_ADDR" \
    || die "the broker did not start; see $STATE_DIR/logs/broker.log"
}

case ${1:-} in
  install) install ;;
  start) start "${2:-durable}" ;;
  stop) stop_bg broker ;;
  status) if is_running broker; then echo "running (pid $(cat "$(pid_file broker)"))"; else echo stopped; exit 1; fi ;;
  *) die "usage: $0 install|start [durable|memory]|stop|status" ;;
esac
