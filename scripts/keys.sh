#!/usr/bin/env bash
# Generates, once, the local JWT key pair (Ed25519) into $STATE_DIR/keys and
# the local admin credentials into $STATE_DIR/admin.env.
# user-service signs with the private key; the others verify with the public one.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
dir=$STATE_DIR/keys
if [ ! -f "$dir/jwt_private.pem" ]; then
  mkdir -p "$dir"; chmod 700 "$dir"
  openssl genpkey -algorithm ed25519 -out "$dir/jwt_private.pem"
  chmod 600 "$dir/jwt_private.pem"
  openssl pkey -in "$dir/jwt_private.pem" -pubout -out "$dir/jwt_public.pem"
  log "generated a local JWT key pair in $dir"
fi

# The bootstrap admin of local runs: a random password, made once.
if [ ! -f "$STATE_DIR/admin.env" ]; then
  umask 077
  printf 'ADMIN_EMAIL=admin@minishop.local\nADMIN_PASSWORD=%s\n' "$(openssl rand -hex 12)" >"$STATE_DIR/admin.env"
  log "generated the local admin's password in $STATE_DIR/admin.env"
fi

# Secrets for `docker compose` (docker-compose.yml mounts them as files under
# /run/secrets): the same key pair and admin password, plus a database
# password. Compose bind-mounts them as they are, and the services run as an
# unprivileged user, so the files are world-readable inside a private folder.
secrets=$STATE_DIR/secrets
if [ ! -f "$secrets/postgres_password" ]; then
  mkdir -p "$secrets"; chmod 700 "$secrets"
  (umask 022
   cp "$dir/jwt_private.pem" "$dir/jwt_public.pem" "$secrets/"
   # shellcheck disable=SC1091
   sed -n 's/^ADMIN_PASSWORD=//p' "$STATE_DIR/admin.env" >"$secrets/admin_password"
   openssl rand -hex 16 >"$secrets/postgres_password")
  chmod 644 "$secrets"/*
  log "wrote the compose secrets into $secrets"
fi
# One database password per service role, and Grafana's own admin password
# (made when missing, so an older secrets folder gets them too).
for name in db_user_service db_product_service db_order_service db_payment_service \
            db_notification_service grafana_password; do
  if [ ! -f "$secrets/$name" ]; then
    (umask 022; openssl rand -hex 16 >"$secrets/$name")
    chmod 644 "$secrets/$name"
  fi
done
