#!/usr/bin/env bash
# Smoke test of a running minishop (start it with `make up`): drives the
# REST APIs like a user with curl and jq, asserts what comes back, prints a
# ✓/✗ line per step and a summary, and exits non-zero on any failure.
#
#   ./test-system.sh
#   USER_URL=... PRODUCT_URL=... ORDER_URL=... PAYMENT_URL=... NOTIFICATION_URL=... WEB_URL=... ./test-system.sh
#   ADMIN_EMAIL=... ADMIN_PASSWORD=...   (default: read from .local/admin.env)
#
# The failing payment is forced the documented way: an order above
# PAYMENT_MAX_AMOUNT (default 10000.00) is always declined.
set -uo pipefail
cd "$(dirname "$0")"

# The services' URLs (USER_URL, PRODUCT_URL, ...), unless given: `make up`'s
# ports, from the one list of services.
# shellcheck source=scripts/roster.sh
source scripts/roster.sh
roster_urls "${HTTP_PORT_BASE:-8080}"
SETTLE_SECONDS=${SETTLE_SECONDS:-30}
if [ -z "${ADMIN_PASSWORD:-}" ] && [ -f .local/admin.env ]; then
  # shellcheck disable=SC1091
  source .local/admin.env
fi

for tool in curl jq; do
  command -v "$tool" >/dev/null || { echo "test-system.sh needs $tool" >&2; exit 2; }
done

passed=0
failed=0
ok() { printf '  \033[32m✓\033[0m %s\n' "$1"; passed=$((passed + 1)); }
bad() { printf '  \033[31m✗\033[0m %s\n' "$1"; failed=$((failed + 1)); }
# check DESCRIPTION COMMAND...: one step, passed when COMMAND succeeds.
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
section() { printf '\n%s\n' "$1"; }

# call METHOD URL [BODY] [extra curl args...]: sets STATUS and BODY. A 429
# (sign-ins are rate limited per address) waits and tries again.
call() {
  local method=$1 url=$2 data=${3:-} out tries=0
  shift 3 2>/dev/null || shift $#
  local args=(-sS -X "$method" -H 'Content-Type: application/json' -w '\n%{http_code}' "$@")
  if [ -n "$data" ]; then args+=(--data "$data"); fi
  while :; do
    if ! out=$(curl "${args[@]}" "$url" 2>&1); then
      STATUS=000; BODY=$out; return 0
    fi
    STATUS=${out##*$'\n'}
    BODY=${out%$'\n'*}
    [ "$STATUS" = 429 ] && [ $tries -lt 20 ] || return 0
    tries=$((tries + 1))
    sleep 3
  done
}
auth() { printf 'Authorization: Bearer %s' "$1"; }
is() { [ "$1" = "$2" ] || { echo "    expected $2, got $1: ${BODY:0:300}" >&2; return 1; }; }
field() { jq -r "$1" <<<"$BODY" 2>/dev/null; }

# wait_for SECONDS COMMAND...: retries COMMAND every 0.5 s.
wait_for() {
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do
    [ $SECONDS -ge $deadline ] && return 1
    sleep 0.5
  done
}
order_status() { call GET "$ORDER_URL/api/v1/orders/$1" "" -H "$(auth "$TOKEN")"; field .status; }
order_done() { local s; s=$(order_status "$1"); [ "$s" != pending ] && [ "$s" != null ]; }
stock_of() { call GET "$PRODUCT_URL/api/v1/products/$1" ""; field '.stock | numbers' | grep -E '^[0-9]+$' || echo -1; }
stock_is() { [ "$(stock_of "$1")" = "$2" ]; }

section "Health"
for entry in "${ROSTER[@]}"; do
  read -r service _ _ var <<<"$entry"
  url=${!var}
  call GET "$url/health" ""
  check "$service /health answers 200" is "$STATUS" 200
  call GET "$url/ready" ""
  check "$service /ready answers 200 (database, broker)" is "$STATUS" 200
done

section "Accounts"
email="smoke-$(date +%s)-$$@example.com"
password="smoke-password-$$"
call POST "$USER_URL/api/v1/register" "{\"name\":\"Smoke Test\",\"email\":\"$email\",\"password\":\"$password\"}"
check "register a customer (201)" is "$STATUS" 201
USER_ID=$(field .id)
call POST "$USER_URL/api/v1/login" "{\"email\":\"$email\",\"password\":\"$password\"}"
check "log in (200, token)" is "$STATUS" 200
TOKEN=$(field .token)
call GET "$USER_URL/api/v1/profile" "" -H "$(auth "$TOKEN")"
check "profile shows the customer" is "$STATUS/$(field .email)" "200/$email"
call GET "$USER_URL/api/v1/profile" ""
check "profile without a token is 401" is "$STATUS" 401

section "Catalogue"
call POST "$USER_URL/api/v1/login" "{\"email\":\"${ADMIN_EMAIL:-}\",\"password\":\"${ADMIN_PASSWORD:-}\"}"
check "the admin logs in" is "$STATUS" 200
ADMIN_TOKEN=$(field .token)
call POST "$PRODUCT_URL/api/v1/products" '{"name":"Smoke mug","price":19.99,"stock":10}' -H "$(auth "$ADMIN_TOKEN")"
check "admin creates a product (201)" is "$STATUS" 201
MUG=$(field .id)
call POST "$PRODUCT_URL/api/v1/products" '{"name":"Smoke piano","price":6000.00,"stock":5}' -H "$(auth "$ADMIN_TOKEN")"
check "admin creates an expensive product (201)" is "$STATUS" 201
PIANO=$(field .id)
call POST "$PRODUCT_URL/api/v1/products" '{"name":"Nope","price":1,"stock":1}' -H "$(auth "$TOKEN")"
check "a customer may not create products (403)" is "$STATUS" 403

section "An order that gets paid"
# The simulated gateway declines PAYMENT_SUCCESS_RATE's complement (20%)
# at random, decided by order id: place orders until one is paid.
PAID=""
for attempt in 1 2 3 4 5 6; do
  before=$(stock_of "$MUG")
  call POST "$ORDER_URL/api/v1/orders" "{\"product_id\":$MUG,\"quantity\":2}" -H "$(auth "$TOKEN")"
  check "place an order for 2 mugs (201 pending, total 39.98)" is "$STATUS/$(field .status)/$(field .total_price)" "201/pending/39.98"
  id=$(field .id)
  check "the order ends paid or failed within ${SETTLE_SECONDS}s" wait_for "$SETTLE_SECONDS" order_done "$id"
  status=$(order_status "$id")
  if [ "$status" = paid ]; then
    PAID=$id
    check "order $id is paid; the mug stock went from $before to $((before - 2))" stock_is "$MUG" $((before - 2))
    break
  fi
  check "order $id was declined at random (attempt $attempt); its stock came back" wait_for 10 stock_is "$MUG" "$before"
done
check "one of the orders was paid" test -n "$PAID"

section "An order whose payment fails (over PAYMENT_MAX_AMOUNT) is compensated"
call POST "$ORDER_URL/api/v1/orders" "{\"items\":[{\"product_id\":$PIANO,\"quantity\":2}]}" -H "$(auth "$TOKEN")"
check "place an order for 2 pianos, 12000.00 (201 pending)" is "$STATUS/$(field .status)" "201/pending"
FAILED=$(field .id)
# (Its stock is held at once, but the decline may give it back before we look.)
check "its units were reserved at 6000.00 each" is "$(field '.items[0].unit_price')" 6000
check "the order ends failed" wait_for "$SETTLE_SECONDS" order_done "$FAILED"
check "its status is failed" is "$(order_status "$FAILED")" failed
check "the piano stock is back to 5" wait_for 10 stock_is "$PIANO" 5
call GET "$PAYMENT_URL/api/v1/payments?order_id=$FAILED" "" -H "$(auth "$TOKEN")"
check "its payment is recorded as failed" is "$STATUS/$(field '.[0].status')" "200/failed"

section "Insufficient stock"
mugs=$(stock_of "$MUG")
call POST "$ORDER_URL/api/v1/orders" "{\"product_id\":$MUG,\"quantity\":1000}" -H "$(auth "$TOKEN")"
check "1000 mugs: 409 Product not available, stock $mugs" is "$STATUS/$(field .error)/$(field .stock)" "409/Product not available/$mugs"
check "nothing was reserved (stock still $mugs)" stock_is "$MUG" "$mugs"

section "Idempotency"
key="smoke-$(date +%s%N)"
call POST "$ORDER_URL/api/v1/orders" "{\"product_id\":$MUG,\"quantity\":1}" -H "$(auth "$TOKEN")" -H "Idempotency-Key: $key"
first=$(field .id)
check "first request with Idempotency-Key (201)" is "$STATUS" 201
call POST "$ORDER_URL/api/v1/orders" "{\"product_id\":$MUG,\"quantity\":1}" -H "$(auth "$TOKEN")" -H "Idempotency-Key: $key"
check "the same key again returns the same order" is "$STATUS/$(field .id)" "201/$first"
wait_for "$SETTLE_SECONDS" order_done "$first"
if [ "$(order_status "$first")" = paid ]; then sold=1; else sold=0; fi
check "one order's worth of stock for both ($sold sold once it settled)" wait_for 10 stock_is "$MUG" $((mugs - sold))
call GET "$ORDER_URL/api/v1/orders?limit=100" "" -H "$(auth "$TOKEN")"
check "the order list holds it once" is "$(jq --argjson id "$first" '[.[] | select(.id == $id)] | length' <<<"$BODY")" 1

section "Notifications"
has_notifications() {
  call GET "$NOTIFICATION_URL/api/v1/notifications?user_id=$USER_ID&limit=100" "" -H "$(auth "$TOKEN")"
  local got
  got=$(jq -r --argjson o "$1" '[.[] | select(.order_id == $o) | .event_type] | sort | join(",")' <<<"$BODY")
  [ "$got" = "$2" ]
}
check "paid order: order_created, payment_success, order_confirmed" \
  wait_for "$SETTLE_SECONDS" has_notifications "${PAID:-0}" "order_confirmed,order_created,payment_success"
check "failed order: order_created, payment_failed, order_cancelled" \
  wait_for "$SETTLE_SECONDS" has_notifications "$FAILED" "order_cancelled,order_created,payment_failed"

section "Timelines"
# timeline_is ID STEPS PUBLISHED: the order's steps, but its publications,
# are STEPS, and the events published are PUBLISHED (the relay records
# those in its own time, so they are compared apart).
timeline_is() {
  call GET "$ORDER_URL/api/v1/orders/$1/timeline" "" -H "$(auth "$TOKEN")"
  [ "$STATUS" = 200 ] \
    && [ "$(field '[.steps[] | select(.step != "event_published") | .step] | join(",")')" = "$2" ] \
    && [ "$(field '[.steps[] | select(.step == "event_published") | .event_type] | join(",")')" = "$3" ]
}
show_timeline() {
  call GET "$ORDER_URL/api/v1/orders/$1/timeline" "" -H "$(auth "$TOKEN")"
  jq -r '.steps[] | "      \(.at[11:23])  \(.step)  by \(.cause)"
    + (if .event_type then " \(.event_type)" else "" end)
    + (if .detail then ": \(.detail)" else "" end)
    + (if .trace_id then "  trace \(.trace_id[0:12])…" else "" end)' <<<"$BODY"
}
check "paid order ${PAID:-0}: placed, reserved, payment received, paid, committed; 2 events published" \
  wait_for "$SETTLE_SECONDS" timeline_is "${PAID:-0}" \
  "placed,stock_reserved,payment_received,paid,stock_committed" "order_created,order_confirmed"
show_timeline "${PAID:-0}"
check "compensated order $FAILED: placed, reserved, payment received, failed, released; 2 events published" \
  wait_for "$SETTLE_SECONDS" timeline_is "$FAILED" \
  "placed,stock_reserved,payment_received,failed,stock_released" "order_created,order_cancelled"
show_timeline "$FAILED"
call GET "$ORDER_URL/api/v1/orders/$FAILED/timeline" ""
check "a timeline without a token is 401" is "$STATUS" 401

section "The web front (storefront and saga console)"
if [ -z "${WEB_URL:-}" ]; then
  bad "WEB_URL is not set"
else
  call GET "$WEB_URL/health" ""
  check "web /health answers 200" is "$STATUS" 200
  web_page=$(curl -sS -D - "$WEB_URL/?q=Smoke%20mug" 2>&1)
  check "the storefront finds a product by name" grep -q "Smoke mug" <<<"$web_page"
  check "the storefront's pages have a Content-Security-Policy" grep -qi "^content-security-policy: default-src 'none'" <<<"$web_page"
  check "the sign-in form carries a CSRF token" grep -q 'name="csrf" value="[A-Za-z0-9_-]\{43\}"' <<<"$(curl -sS "$WEB_URL/signin")"
  web_status=$(curl -sS -o /dev/null -w '%{http_code}' -X POST "$WEB_URL/cart/add" -d "product_id=$MUG&quantity=1")
  check "a form without its CSRF token is refused (403)" is "$web_status" 403
  # The console, through web's own sign-in form, as the admin.
  web_jar=$(mktemp)
  web_csrf=$(curl -sS -c "$web_jar" -b "$web_jar" "$WEB_URL/signin" | sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p' | head -n 1)
  curl -sS -o /dev/null -c "$web_jar" -b "$web_jar" -X POST "$WEB_URL/signin" --data-urlencode "csrf=$web_csrf" \
    --data-urlencode "email=${ADMIN_EMAIL:-}" --data-urlencode "password=${ADMIN_PASSWORD:-}"
  console=$(curl -sS -b "$web_jar" -w '\n%{http_code}' "$WEB_URL/console")
  check "the admin opens the saga console (200)" is "${console##*$'\n'}" 200
  check "the console shows every instance ready" \
    test "$(grep -c '<span class="up">ready</span>' <<<"$console")" -ge "${#ROSTER[@]}"
  if curl -fsS -o /dev/null http://127.0.0.1:9090/-/ready 2>/dev/null; then
    check "the console charts from Prometheus and lists its alerts" \
      grep -q 'Orders per second by outcome' <<<"$console"
  fi
  rm -f "$web_jar"
fi

section "The event contract"
for url in "$ORDER_URL" "$PAYMENT_URL"; do
  call GET "$url/asyncapi.yaml" ""
  check "$url/asyncapi.yaml is docs/asyncapi.yaml" is "$STATUS/$(cmp -s <(printf '%s' "$BODY") docs/asyncapi.yaml && echo same)" "200/same"
done

section "Metrics"
for entry in "${ROSTER[@]}"; do
  read -r service _ _ var <<<"$entry"
  call GET "${!var}/metrics" ""
  check "$service /metrics answers with RED metrics" grep -q '^http_requests_total' <<<"$BODY"
done
call GET "$ORDER_URL/metrics" ""
check "order-service counts saga outcomes" grep -q '^saga_outcomes_total{.*outcome="paid"' <<<"$BODY"
check "product-service counts the gRPC calls it served by method and code" \
  grep -qE '^grpc_server_requests_total\{.*(code="OK".*method="/product.ProductService/ReserveStock"|method="/product.ProductService/ReserveStock".*code="OK")' <<<"$(curl -fsS "$PRODUCT_URL/metrics")"
check "order-service counts the gRPC calls it made by method and code" \
  grep -qE '^grpc_client_requests_total\{.*method="/product.ProductService/ReserveStock"' <<<"$(curl -fsS "$ORDER_URL/metrics")"
for entry in "${ROSTER[@]}"; do
  read -r service _ _ var <<<"$entry"
  check "$service exports its database pool (in use, idle)" \
    grep -q '^db_pool_connections{.*state="in_use"' <<<"$(curl -fsS "${!var}/metrics")"
done
# The lag is measured every KAFKA_LAG_INTERVAL_MS (5 s) once partitions are assigned.
lag_reported() { curl -fsS "$1/metrics" | grep -q '^kafka_consumer_lag{'; }
for service in "${SAGA_SERVICES[@]}"; do
  var=$(roster_field "$service" 3)
  check "$service reports its consumer lag" wait_for 20 lag_reported "${!var}"
done
all_metrics=""
for url in $USER_URL $PRODUCT_URL $ORDER_URL $PAYMENT_URL $NOTIFICATION_URL; do
  call GET "$url/metrics" ""
  all_metrics+=$BODY$'\n'
done
# Every metric an alert rule or a dashboard panel names is one the services
# really export.
check "the Grafana dashboards are valid JSON" jq -e . deploy/grafana/dashboards/*.json >/dev/null
exprs=$( { cat deploy/prometheus/alerts.yml; jq -r '.. | .expr? // empty' deploy/grafana/dashboards/*.json; } )
for metric in $(grep -oE '\b(http|grpc|db|product|outbox|kafka|orders|saga|payments|notifications|cache)_[a-z_]+' <<<"$exprs" | sed 's/_bucket$//' | sort -u); do
  check "$metric (alerts/dashboards) is exported" grep -qE "^${metric}(_bucket)?[{ ]" <<<"$all_metrics"
done

section "Bad input at every service (schemathesis)"
check "no 5xx and no schema violation from generated requests (scripts/api-fuzz.sh)" \
  env USER_URL="$USER_URL" PRODUCT_URL="$PRODUCT_URL" ORDER_URL="$ORDER_URL" \
  PAYMENT_URL="$PAYMENT_URL" NOTIFICATION_URL="$NOTIFICATION_URL" "$(dirname "$0")/scripts/api-fuzz.sh"

section "Prometheus scrapes every service"
# The Prometheus `make up` runs (or compose's) when one answers on
# 127.0.0.1:9090; else the real Prometheus with the same configuration
# (scripts/prometheus-config.sh) for as long as it takes to see every target
# up. Targets: the services, web and Prometheus itself.
expected_targets=$((${#EVERYTHING[@]} + 1))
targets_up() {
  local health
  health=$(curl -fsS "http://127.0.0.1:9090/api/v1/targets" 2>/dev/null \
    | jq -r --argjson n "$expected_targets" '[.data.activeTargets[] | .health] | if length == $n then unique | join(",") else "incomplete" end')
  [ "$health" = up ]
}
if curl -fsS -o /dev/null http://127.0.0.1:9090/-/ready 2>/dev/null; then
  check "the running Prometheus sees all $expected_targets targets up (the services, web and itself)" wait_for 60 targets_up
  rules=$(curl -fsS http://127.0.0.1:9090/api/v1/rules 2>/dev/null | jq '[.data.groups[].rules[]] | length' 2>/dev/null)
  check "the running Prometheus has the alert rules loaded" test "${rules:-0}" -gt 0
elif ! command -v prometheus >/dev/null; then
  bad "prometheus is not installed (scripts/deps.sh installs the Debian package)"
else
  prom_data=$(mktemp -d)
  scripts/prometheus-config.sh "$prom_data"
  # Without Alertmanager: this one only scrapes.
  sed -i '/^alerting:/,/^$/d' "$prom_data/prometheus.yml"
  prometheus --config.file="$prom_data/prometheus.yml" --storage.tsdb.path="$prom_data/tsdb" \
    --web.listen-address=127.0.0.1:9090 >"$prom_data/prometheus.log" 2>&1 &
  prom_pid=$!
  check "Prometheus sees all $expected_targets targets up (the services, web and itself)" wait_for 60 targets_up
  kill "$prom_pid" 2>/dev/null; wait "$prom_pid" 2>/dev/null
  rm -rf "$prom_data"
fi

printf '\n%d passed, %d failed\n' "$passed" "$failed"
[ "$failed" -eq 0 ]
