#!/usr/bin/env bash
# The compose Kafka's start (apache/kafka 3.9, one KRaft node): starts the
# image's own broker, then, through the loopback listener that only this
# container can reach, gives each saga service and the operator tools a
# SCRAM-SHA-512 login (password from /run/secrets/kafka_<user>, made by
# scripts/keys.sh) and creates the saga's topics. /tmp/minishop-ready marks
# the end of that set-up: the health check waits for it, so nothing that
# logs in starts before its login exists (docs/security.md, "The broker").
set -euo pipefail
rm -f /tmp/minishop-ready
/etc/kafka/docker/run &
broker=$!
trap 'kill -TERM "$broker" 2>/dev/null; wait "$broker"' TERM INT

bin=/opt/kafka/bin
local=localhost:9092
until "$bin/kafka-broker-api-versions.sh" --bootstrap-server "$local" >/dev/null 2>&1; do
  kill -0 "$broker" 2>/dev/null || { echo "the broker exited before it was up" >&2; exit 1; }
  sleep 2
done

# Setting a user's password again is harmless: after a restart the logins
# are the secret files' passwords, even if those changed.
for user in ${KAFKA_LOGINS}; do
  password=$(cat "/run/secrets/kafka_$user")
  "$bin/kafka-configs.sh" --bootstrap-server "$local" --alter --entity-type users \
    --entity-name "$user" --add-config "SCRAM-SHA-512=[password=$password]" >/dev/null
done
# The partition counts scripts/broker.sh uses locally.
"$bin/kafka-topics.sh" --bootstrap-server "$local" --create --if-not-exists \
  --topic order_events --partitions 6 --replication-factor 1
"$bin/kafka-topics.sh" --bootstrap-server "$local" --create --if-not-exists \
  --topic order_events.dlq --partitions 1 --replication-factor 1
touch /tmp/minishop-ready
echo "===> minishop: logins for ${KAFKA_LOGINS} and the saga's topics are in place"
wait "$broker"
