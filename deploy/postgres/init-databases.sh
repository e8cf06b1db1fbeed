#!/bin/sh
# First start of the compose PostgreSQL: a role and a database per service.
# Each role logs in with its own password (/run/secrets/db_<role>), owns its
# database (so the service runs its own migrations there) and nothing else;
# no other role may connect to that database. The superuser is for
# operators, never for a service.
set -eu
for pair in user_service:userdb product_service:productdb order_service:orderdb \
            payment_service:paymentdb notification_service:notificationdb; do
  role=${pair%%:*}
  db=${pair#*:}
  echo "creating role $role and database $db"
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v role="$role" -v db="$db" -v password="$(cat "/run/secrets/db_$role")" <<'SQL'
CREATE ROLE :"role" LOGIN PASSWORD :'password';
CREATE DATABASE :"db" OWNER :"role";
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
SQL
done
