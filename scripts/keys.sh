#!/usr/bin/env bash
# Generates the local JWT key pair (Ed25519) once into $STATE_DIR/keys.
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
