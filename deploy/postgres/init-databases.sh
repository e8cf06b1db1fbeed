#!/bin/sh
# First start of the compose PostgreSQL: one database per service (each
# service owns its schema and runs its own migrations).
set -eu
for db in userdb productdb orderdb paymentdb notificationdb; do
  echo "creating database $db"
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -c "CREATE DATABASE $db OWNER \"$POSTGRES_USER\""
done
