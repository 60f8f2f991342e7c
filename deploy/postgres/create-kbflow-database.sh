#!/bin/sh
# Creates kbflow's own PostgreSQL role and database (not Temporal's) if missing, and sets
# the role's password. Safe to run on every `docker compose up`: an existing role keeps
# its objects (its password is set again), an existing database is kept. kbflow's worker
# creates and migrates its tables itself (store/migrations/postgres, under an advisory
# lock), as this role, which owns its database and is no superuser: it cannot connect to
# Temporal's databases, and the processing log's append-only triggers refuse an UPDATE
# or DELETE of a line even from the tables' owner.
#
# Runs in the postgres image; psql reads PGHOST, PGPORT, PGUSER (Temporal's superuser)
# and PGPASSWORD from the environment. The new role's password never appears on a
# command line (psql's \getenv reads it).
set -eu

: "${PGHOST:?}" "${PGUSER:?}" "${PGPASSWORD:?}"
: "${KBFLOW_DB_USER:?}" "${KBFLOW_DB_PASSWORD:?}" "${KBFLOW_DB_NAME:?}"

echo "create-kbflow-database: role ${KBFLOW_DB_USER}, database ${KBFLOW_DB_NAME}"
psql -v ON_ERROR_STOP=1 --no-psqlrc --quiet --dbname postgres <<'SQL'
\getenv kbflow_role KBFLOW_DB_USER
\getenv kbflow_password KBFLOW_DB_PASSWORD
\getenv kbflow_database KBFLOW_DB_NAME
SELECT format('CREATE ROLE %I LOGIN', :'kbflow_role')
    WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'kbflow_role') \gexec
SELECT format('ALTER ROLE %I WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION '
              'PASSWORD %L', :'kbflow_role', :'kbflow_password') \gexec
SELECT format('CREATE DATABASE %I OWNER %I ENCODING %L', :'kbflow_database', :'kbflow_role',
              'UTF8')
    WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'kbflow_database') \gexec
-- Only kbflow's role connects to kbflow's database; it connects to no other.
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'kbflow_database') \gexec
SELECT format('REVOKE CONNECT ON DATABASE %I FROM PUBLIC', datname)
    FROM pg_database WHERE datname IN ('temporal', 'temporal_visibility') \gexec
SQL
echo "create-kbflow-database: done"
