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

USER_URL=${USER_URL:-http://127.0.0.1:8080}
PRODUCT_URL=${PRODUCT_URL:-http://127.0.0.1:8081}
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

# post URL JSON [TOKEN]: prints the body; fails on a status other than
# 2xx/409. A 429 (sign-ins are rate limited per address) waits and retries.
post() {
  local out status tries=0
  while :; do
    out=$(curl -sS -w '\n%{http_code}' -H 'Content-Type: application/json' \
      ${3:+-H "Authorization: Bearer $3"} --data "$2" "$1") || die "cannot reach $1"
    status=${out##*$'\n'}
    if [ "$status" = 429 ] && [ $tries -lt 20 ]; then
      tries=$((tries + 1))
      sleep 3
      continue
    fi
    case $status in
      2??|409) printf '%s' "${out%$'\n'*}"; return 0 ;;
      *) die "POST $1 answered $status: ${out%$'\n'*}" ;;
    esac
  done
}

token=$(admin_token "$USER_URL") || die "the admin could not log in at $USER_URL"

# The catalogue: name, price, stock.
CATALOGUE='[
  ["Espresso cup, stoneware", 9.50, 120],
  ["Pour-over coffee kettle", 44.90, 35],
  ["Burr coffee grinder", 129.00, 20],
  ["Single-origin beans, 1 kg", 27.80, 200],
  ["Cast-iron skillet, 26 cm", 39.99, 40],
  ["Chef knife, 20 cm", 89.00, 25],
  ["Linen apron", 24.50, 60],
  ["Wool throw blanket", 74.00, 30],
  ["Desk lamp, brass", 119.00, 15],
  ["Notebook, dotted A5", 12.90, 300],
  ["Fountain pen", 58.00, 45],
  ["Bicycle bell", 14.20, 80],
  ["Grand piano (forces a payment decline: over 10000.00)", 15999.00, 2]
]'

# Every live product's name, a page at a time.
existing=""
offset=0
while :; do
  page=$(curl -fsS "$PRODUCT_URL/api/v1/products?limit=100&offset=$offset") \
    || die "cannot list products at $PRODUCT_URL"
  [ "$(jq length <<<"$page")" -gt 0 ] || break
  existing+=$(jq -r '.[].name' <<<"$page")$'\n'
  offset=$((offset + 100))
done
created=0
kept=0
while IFS= read -r item; do
  name=$(jq -r '.[0]' <<<"$item")
  if grep -qxF "$name" <<<"$existing"; then
    kept=$((kept + 1))
    continue
  fi
  post "$PRODUCT_URL/api/v1/products" "$(jq -c '{name: .[0], price: .[1], stock: .[2]}' <<<"$item")" "$token" >/dev/null
  created=$((created + 1))
done < <(jq -c '.[]' <<<"$CATALOGUE")
log "catalogue: $created products created, $kept already there"

customer=$(post "$USER_URL/api/v1/register" \
  "$(jq -n --arg e "$DEMO_EMAIL" --arg p "$DEMO_PASSWORD" '{name: "Demo Customer", email: $e, password: $p}')")
if [ "$(jq -r '.code // empty' <<<"$customer")" = email_taken ]; then
  log "demo customer $DEMO_EMAIL already registered"
else
  log "demo customer $DEMO_EMAIL registered"
fi
for _ in $(seq 20); do
  login_status=$(curl -sS -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
    --data "$(jq -n --arg e "$DEMO_EMAIL" --arg p "$DEMO_PASSWORD" '{email: $e, password: $p}')" \
    "$USER_URL/api/v1/login") || die "cannot reach $USER_URL"
  [ "$login_status" = 429 ] || break
  sleep 3
done
case $login_status in
  200)
    log "log in as $DEMO_EMAIL / $DEMO_PASSWORD (kept in $STATE_DIR/demo.env) and place an order:"
    printf '  curl -s -X POST %s/api/v1/login -H "Content-Type: application/json" -d %s\n' \
      "$USER_URL" "'{\"email\":\"$DEMO_EMAIL\",\"password\":\"$DEMO_PASSWORD\"}'"
    ;;
  401) log "warning: $DEMO_EMAIL was registered earlier with another password; left as it is" ;;
  *) die "the demo customer's login answered $login_status" ;;
esac
