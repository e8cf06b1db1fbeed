# The services, written once. scripts/lib.sh (so up, down, chaos, bench,
# api-fuzz) and ./test-system.sh read them from here. Sourced, not run; it
# only defines names.
# shellcheck shell=bash

# The services: name, HTTP port as an offset from HTTP_PORT_BASE (8080 locally), its
# database (before DB_PREFIX), and the variable that holds its base URL.
ROSTER=(
  "user-service 0 userdb USER_URL"
  "product-service 1 productdb PRODUCT_URL"
  "order-service 2 orderdb ORDER_URL"
  "payment-service 3 paymentdb PAYMENT_URL"
  "notification-service 4 notificationdb NOTIFICATION_URL"
)
# The browser's front (storefront and saga console): HTTP_PORT_BASE + 5,
# no database of its own (it calls the services' APIs), the same columns.
WEB_ENTRY="web 5 - WEB_URL"
# Every process of the system: the services, then the front.
EVERYTHING=("${ROSTER[@]}" "$WEB_ENTRY")
# The services of the saga, which can run a second replica
# (MINISHOP_REPLICAS=2, scripts/up.sh): NAME-2, HTTP on NAME's port + 10.
SAGA_SERVICES=(order-service payment-service notification-service)
# The services that produce events, each signing them with a key of its own
# (scripts/keys.sh; shared::kafka::events::Producer in the code).
EVENT_PRODUCERS=(order-service payment-service)

# roster_field NAME COLUMN: column 1 (port offset), 2 (database) or 3 (URL
# variable) of NAME's entry; NAME-2 is NAME's second replica.
roster_field() {
  local entry name rest
  for entry in "${EVERYTHING[@]}"; do
    read -r name rest <<<"$entry"
    if [ "$name" = "${1%-2}" ]; then
      read -r -a rest <<<"$rest"
      echo "${rest[$(($2 - 1))]}"
      return 0
    fi
  done
  return 1
}

# service_port NAME [BASE]: NAME's HTTP port (BASE: HTTP_PORT_BASE, or 8080).
service_port() {
  local offset base=${2:-${HTTP_PORT_BASE:-8080}}
  offset=$(roster_field "$1" 1) || return 1
  case $1 in *-2) offset=$((offset + 10)) ;; esac
  echo $((base + offset))
}

# roster_urls BASE [force]: sets (and exports) each service's URL variable
# for the HTTP ports from BASE; without `force` only those not set already.
roster_urls() {
  local entry name offset db var
  for entry in "${EVERYTHING[@]}"; do
    read -r name offset db var <<<"$entry"
    if [ "${2:-}" = force ] || [ -z "${!var:-}" ]; then
      export "$var=http://127.0.0.1:$(($1 + offset))"
    fi
  done
}
