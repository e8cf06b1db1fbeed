#!/usr/bin/env bash
# How fast web draws its pages: each page under load from wrk (2
# connections, WEB_BENCH_SECONDS each, default 10), as a signed-in customer
# (an admin for the console), against a running stack with the demo
# catalogue (make up; make seed). Prints p50 and p95 per page beside the
# bound (20 ms p95) and exits 1 if a page is over it.
#   scripts/bench-web.sh                 against make up's stack (seed it first)
#   WEB_URL=... ADMIN_EMAIL=... ADMIN_PASSWORD=... scripts/bench-web.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

WEB_URL=${WEB_URL:-http://127.0.0.1:$(service_port web)}
SECS=${WEB_BENCH_SECONDS:-10}
BOUND_MS=20
command -v wrk >/dev/null || die "wrk is needed (scripts/deps.sh installs it)"
if [ -z "${ADMIN_PASSWORD:-}" ]; then
  # shellcheck disable=SC1091
  source "$STATE_DIR/admin.env"
fi

jar=$(mktemp -d)
trap 'rm -rf "$jar"' EXIT
# sign_in JAR EMAIL PASSWORD: a session in cookie jar JAR (through web's forms).
form_csrf() { curl -fsS -c "$1" -b "$1" "$WEB_URL/signin" | sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p' | head -n 1; }
sign_in() {
  local csrf; csrf=$(form_csrf "$1")
  curl -fsS -o /dev/null -c "$1" -b "$1" -X POST "$WEB_URL/signin" \
    --data-urlencode "csrf=$csrf" --data-urlencode "email=$2" --data-urlencode "password=$3"
}
# curl keeps HttpOnly cookies (all of web's) on lines starting #HttpOnly_.
cookie_header() { sed 's/^#HttpOnly_//' "$1" | awk '!/^#/ && NF >= 7 {printf "%s%s=%s", sep, $6, $7; sep="; "}'; }

customer=bench-$(date +%s)@bench.minishop.local
csrf=$(form_csrf "$jar/customer")
curl -fsS -o /dev/null -c "$jar/customer" -b "$jar/customer" -X POST "$WEB_URL/signup" \
  --data-urlencode "csrf=$csrf" --data-urlencode "name=Bench Customer" \
  --data-urlencode "email=$customer" --data-urlencode "password=correct horse battery"
# A cart of three lines, and one order placed from it.
for id in 1 2 3; do
  curl -fsS -o /dev/null -c "$jar/customer" -b "$jar/customer" -X POST "$WEB_URL/cart/add" \
    --data-urlencode "csrf=$csrf" -d "product_id=$id&quantity=1"
done
key=$(curl -fsS -b "$jar/customer" "$WEB_URL/cart" | sed -n 's/.*name="idempotency_key" value="\([^"]*\)".*/\1/p')
order=$(curl -fsS -o /dev/null -w '%{redirect_url}' -b "$jar/customer" -X POST "$WEB_URL/checkout" \
  --data-urlencode "csrf=$csrf" -d "idempotency_key=$key")
order_path=${order#"$WEB_URL"}
for id in 1 2 3; do
  curl -fsS -o /dev/null -c "$jar/customer" -b "$jar/customer" -X POST "$WEB_URL/cart/add" \
    --data-urlencode "csrf=$csrf" -d "product_id=$id&quantity=1"
done
sign_in "$jar/admin" "$ADMIN_EMAIL" "$ADMIN_PASSWORD"

# wrk's own percentiles, in ms.
cat >"$jar/p.lua" <<'LUA'
done = function(summary, latency, requests)
  io.write(string.format("RESULT %.2f %.2f %d %d\n", latency:percentile(50) / 1000,
    latency:percentile(95) / 1000, summary.requests, summary.errors.status))
end
LUA

over=0
printf '%-22s %9s %9s %9s %8s %s\n' page p50_ms p95_ms bound_ms requests
bench() {
  local name=$1 path=$2 who=$3 out p50 p95 n errors
  out=$(wrk -t1 -c2 -d"${SECS}s" -s "$jar/p.lua" -H "Cookie: $(cookie_header "$jar/$who")" "$WEB_URL$path" | grep '^RESULT')
  read -r _ p50 p95 n errors <<<"$out"
  # A page that answers anything but 200 (a redirect to sign in) is not measured.
  [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: $(cookie_header "$jar/$who")" "$WEB_URL$path")" = 200 ] \
    || die "$WEB_URL$path does not answer 200 to $who"
  printf '%-22s %9s %9s %9s %8s%s\n' "$name" "$p50" "$p95" "$BOUND_MS" "$n" \
    "$([ "$errors" = 0 ] || echo "  ($errors non-2xx)")"
  awk -v p="$p95" -v b="$BOUND_MS" 'BEGIN {exit !(p < b)}' || over=$((over + 1))
}
bench "catalogue" "/" customer
bench "catalogue search" "/?q=cup" customer
bench "catalogue page 2" "/?page=2" customer
bench "product" "/products/1" customer
bench "cart (3 lines)" "/cart" customer
bench "my orders" "/orders" customer
bench "an order" "$order_path" customer
bench "sign-in form" "/signin" customer
bench "console" "/console" admin
echo "($SECS s a page, 2 connections; web's profile: the stack's, MINISHOP_PROFILE)"
[ "$over" -eq 0 ] || die "$over pages over ${BOUND_MS} ms p95"
