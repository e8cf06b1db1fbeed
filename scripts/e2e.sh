#!/usr/bin/env bash
# The web front in a real browser: web/e2e's tests drive Debian's Chromium
# with playwright-core (npm) against a stack, and save a screenshot of every
# page they visit in web/e2e/screenshots.
#   scripts/e2e.sh               against the running `make up` stack (seed it first)
#   scripts/e2e.sh --own-stack   on a throwaway stack of its own beside any
#                                `make up` one, seeded, stopped at the end (`make test`):
#                                state in .local/e2e, databases e2e_*, HTTP ports
#                                18480-18485, broker 127.0.0.1:19492 (memory)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

own_stack_if_asked "the browser tests" e2e 18480 15451 19492 "$@"
if [ "${1:-}" = --own-stack ]; then
  "$ROOT/scripts/seed.sh" >"$STATE_DIR/logs/seed.log" 2>&1 \
    || { tail -n 20 "$STATE_DIR/logs/seed.log"; die "seeding the e2e stack failed"; }
fi

# The browser (Debian's) and its driver (npm, the versions in the lock file).
if ! command -v chromium >/dev/null 2>&1; then
  log "installing chromium (apt)"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
if [ ! -d web/e2e/node_modules/playwright-core ] || [ ! -d web/e2e/node_modules/axe-core ]; then
  log "installing playwright-core and axe-core (npm)"
  npm ci --silent --no-audit --no-fund --prefix web/e2e >/dev/null
fi

# shellcheck disable=SC1091
source "$STATE_DIR/admin.env"
export WEB_URL=${WEB_URL:-http://127.0.0.1:$(service_port web)}
export ADMIN_EMAIL ADMIN_PASSWORD SCREENSHOTS=${SCREENSHOTS:-$ROOT/web/e2e/screenshots}
# A poison message for the dead-letter test: the broker's own tool, which
# cannot log in, so only where the broker asks for no login.
if [ "${BROKER_MODE:-durable}" = memory ] || [ "$(broker_auth)" = none ]; then
  export E2E_POISON_COMMAND="printf '{\"key\": \"%s\", \"value\": \"poison\"}\\n' \"\$1\" \
    | $NISSHI_BIN cat produce --broker tcp://$BROKER_ADDR --silent ${KAFKA_TOPIC:-order_events}"
fi
# payment-service's pid: the cancel test pauses it (SIGSTOP) to keep an order pending.
if [ "${1:-}" = --own-stack ] && is_running payment-service; then
  E2E_PAYMENT_PID=$(cat "$(pid_file payment-service)")
  export E2E_PAYMENT_PID
fi
log "browser tests against $WEB_URL (screenshots in $SCREENSHOTS)"
node --test --test-concurrency=1 --test-reporter=spec web/e2e/
