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
# One database password per service role, Grafana's own admin password,
# a password per broker login (BROKER_USERS in lib.sh: one per service,
# and `minishop-admin` for the operator tools), and the token the services
# send their spans to web with (otlp_token); made when missing, so an older
# secrets folder gets them too.
for name in db_user_service db_product_service db_order_service db_payment_service \
            db_notification_service grafana_password otlp_token "${BROKER_USERS[@]/#/kafka_}"; do
  if [ ! -f "$secrets/$name" ]; then
    (umask 022; openssl rand -hex 16 >"$secrets/$name")
    chmod 644 "$secrets/$name"
  fi
done

# The local CA and a certificate per service, for mutual TLS on internal gRPC
# (docs/security.md): ECDSA P-256, the service's name as its only DNS name
# (clients verify product-service as "product-service" whatever address they
# dial), usable as server and as client. product-service accepts stock calls
# from order-service's certificate only.
tls=$dir/tls
if [ ! -f "$tls/ca.pem" ]; then
  mkdir -p "$tls"; chmod 700 "$tls"
  (umask 077
   openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
     -keyout "$tls/ca-key.pem" -out "$tls/ca.pem" -days 3650 -subj "/CN=minishop local CA" \
     -addext "basicConstraints=critical,CA:TRUE" \
     -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null)
  log "generated a local CA in $tls"
fi
for entry in "${ROSTER[@]}"; do
  read -r name _ <<<"$entry"
  [ -f "$tls/$name.pem" ] && continue
  (umask 077
   openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
     -keyout "$tls/$name-key.pem" -subj "/CN=$name" -out "$tls/$name.csr" 2>/dev/null
   openssl x509 -req -in "$tls/$name.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca-key.pem" \
     -CAcreateserial -days 825 -out "$tls/$name.pem" 2>/dev/null -extfile <(printf '%s\n' \
       "subjectAltName=DNS:$name" "extendedKeyUsage=serverAuth,clientAuth" \
       "keyUsage=critical,digitalSignature" "basicConstraints=critical,CA:FALSE"))
  rm -f "$tls/$name.csr"
  log "issued $name's certificate"
done
# For compose: the CA certificate and each service's pair (not the CA's key).
if [ ! -f "$secrets/tls_ca.pem" ] || [ "$tls/ca.pem" -nt "$secrets/tls_ca.pem" ]; then
  (umask 022
   cp "$tls/ca.pem" "$secrets/tls_ca.pem"
   for entry in "${ROSTER[@]}"; do
     read -r name _ <<<"$entry"
     cp "$tls/$name.pem" "$secrets/tls_$name.pem"
     cp "$tls/$name-key.pem" "$secrets/tls_$name-key.pem"
   done)
  chmod 644 "$secrets"/tls_*
fi

# Each producer's event signing key (Ed25519), and the keyring every
# consumer trusts: a line `<producer> <base64 of the public key's DER>` per
# key (docs/security.md, "Event signatures"). To rotate a key by hand, add
# the new key's line to the keyring, restart the consumers, then the
# producer with its new key; drop the old line once nothing signed with it
# is left to consume.
events=$dir/events
mkdir -p "$events"; chmod 700 "$events"
for name in "${EVENT_PRODUCERS[@]}"; do
  [ -f "$events/$name-key.pem" ] && continue
  (umask 077; openssl genpkey -algorithm ed25519 -out "$events/$name-key.pem")
  log "generated $name's event signing key"
done
keyring=$(for name in "${EVENT_PRODUCERS[@]}"; do
  printf '%s %s\n' "$name" "$(openssl pkey -in "$events/$name-key.pem" -pubout -outform DER | base64 | tr -d '\n')"
done)
if [ "$(cat "$events/keyring" 2>/dev/null)" != "$keyring" ]; then
  (umask 077; printf '%s\n' "$keyring" >"$events/keyring")
fi
# For compose: each producer's key and the keyring.
(umask 022
 for name in "${EVENT_PRODUCERS[@]}"; do
   cmp -s "$events/$name-key.pem" "$secrets/event_$name-key.pem" 2>/dev/null \
     || cp "$events/$name-key.pem" "$secrets/event_$name-key.pem"
 done
 cmp -s "$events/keyring" "$secrets/event_keyring" 2>/dev/null || cp "$events/keyring" "$secrets/event_keyring")
chmod 644 "$secrets"/event_*

# For the Kubernetes dev overlay: the files its secretGenerator reads
# (deploy/k8s/overlays/dev/kustomization.yaml), copied beside it because
# kustomize reads nothing outside an overlay's folder. Git ignores them.
# Only the main state's keys (not a test stack's own, MINISHOP_STATE_DIR).
k8s_secrets=$ROOT/deploy/k8s/overlays/dev/secrets
[ "$STATE_DIR" = "$ROOT/.local" ] || exit 0
mkdir -p "$k8s_secrets"
(umask 077
 for name in jwt_private.pem jwt_public.pem admin_password postgres_password \
             db_user_service db_product_service db_order_service db_payment_service \
             db_notification_service tls_ca.pem tls_product-service.pem \
             tls_product-service-key.pem tls_order-service.pem tls_order-service-key.pem \
             event_order-service-key.pem event_payment-service-key.pem event_keyring; do
   cmp -s "$secrets/$name" "$k8s_secrets/$name" 2>/dev/null || cp "$secrets/$name" "$k8s_secrets/$name"
 done)
