#!/bin/sh
# Creates Temporal's two PostgreSQL databases (history and visibility) if missing and
# brings their schemas to the version this admin-tools image ships. Safe to run on every
# `docker compose up`: existing databases are kept, applied versions are skipped, so a
# bump of the Temporal image tags upgrades the schema before the new server starts.
#
# Runs in temporalio/admin-tools; temporal-sql-tool reads SQL_PLUGIN, SQL_HOST,
# SQL_PORT, SQL_USER and SQL_PASSWORD from the environment.
set -eu

: "${SQL_PLUGIN:?}" "${SQL_HOST:?}" "${SQL_PORT:?}" "${SQL_USER:?}" "${SQL_PASSWORD:?}"
schemas=/etc/temporal/schema/postgresql/v12

for pair in temporal:temporal temporal_visibility:visibility; do
    database=${pair%%:*}
    schema=${pair#*:}
    echo "setup-schema: database ${database}"
    temporal-sql-tool --database "${database}" create-database
    temporal-sql-tool --database "${database}" setup-schema -v 0.0
    temporal-sql-tool --database "${database}" update-schema \
        --schema-dir "${schemas}/${schema}/versioned"
done
echo "setup-schema: done"
