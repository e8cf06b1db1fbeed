#!/bin/sh
# A role and a database per service, on an empty or an already set-up
# PostgreSQL (it may run again): compose's PostgreSQL runs it at its first
# start (as an init script), Kubernetes as the Job minishop-databases
# (deploy/postgres/job.yaml). Each role logs in with its own password
# (/run/secrets/db_<role>, set again on every run), owns its database (so
# the service runs its own migrations there) and nothing else; no other
# role may connect to that database. The superuser is for operators, never
# for a service. It connects as POSTGRES_USER (compose) or PGUSER, to
# PGHOST when set.
set -eu
superuser=${POSTGRES_USER:-${PGUSER:-postgres}}
for pair in user_service:userdb product_service:productdb order_service:orderdb \
            payment_service:paymentdb notification_service:notificationdb; do
  role=${pair%%:*}
  db=${pair#*:}
  echo "role $role and database $db"
  psql -v ON_ERROR_STOP=1 --username "$superuser" --dbname postgres \
    -v role="$role" -v db="$db" -v password="$(cat "/run/secrets/db_$role")" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN', :'role')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') \gexec
ALTER ROLE :"role" LOGIN PASSWORD :'password';
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'role')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
SQL
done
