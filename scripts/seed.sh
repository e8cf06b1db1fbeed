#!/usr/bin/env bash
# Loads a demo catalogue and a demo customer into a running minishop (start
# it with `make up`), through the public API, so a new user has something to
# browse and order at once. Safe to run again: products that exist (by name)
# and the customer are left alone.
#   scripts/seed.sh               against the local stack
#   USER_URL=... PRODUCT_URL=... ADMIN_EMAIL=... ADMIN_PASSWORD=... scripts/seed.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

roster_urls "$HTTP_PORT_BASE"
if [ -z "${ADMIN_PASSWORD:-}" ]; then
  [ -f "$STATE_DIR/admin.env" ] || die "no admin credentials: set ADMIN_EMAIL/ADMIN_PASSWORD or run make up first"
  # shellcheck disable=SC1091
  source "$STATE_DIR/admin.env"
fi
DEMO_EMAIL=${DEMO_EMAIL:-demo@minishop.local}
if [ -z "${DEMO_PASSWORD:-}" ]; then
  if [ ! -f "$STATE_DIR/demo.env" ]; then
    mkdir -p "$STATE_DIR"
    printf 'DEMO_PASSWORD=%s\n' "$(openssl rand -hex 8)" >"$STATE_DIR/demo.env"
  fi
  # shellcheck disable=SC1091
  source "$STATE_DIR/demo.env"
fi

# The seeding itself is loadgen's (`loadgen::seed`), shared with the load.
cargo build -q -p loadgen --bin seed_demo
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/debug/seed_demo
USER_URL=$USER_URL PRODUCT_URL=$PRODUCT_URL ADMIN_EMAIL=$ADMIN_EMAIL ADMIN_PASSWORD=$ADMIN_PASSWORD \
  DEMO_EMAIL=$DEMO_EMAIL DEMO_PASSWORD=$DEMO_PASSWORD "$BIN"
echo "  (the password is kept in $STATE_DIR/demo.env)"
