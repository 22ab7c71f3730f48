#!/usr/bin/env bash
# Runs once, when the compose Postgres starts on an empty volume: one role per service owning its
# own schema in the `tracetrack` database (as scripts/run.sh does locally). In compose each service
# migrates its schema at start-up; Kubernetes separates the DDL role from the runtime role
# (deploy/k8s/postgres-roles.sql).
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" -v pw="$TT_DB_PASSWORD" <<'SQL'
CREATE ROLE tt_auth     LOGIN PASSWORD :'pw';
CREATE ROLE tt_registry LOGIN PASSWORD :'pw';
CREATE ROLE tt_scan     LOGIN PASSWORD :'pw';
CREATE ROLE tt_billing  LOGIN PASSWORD :'pw';
CREATE ROLE tt_stats    LOGIN PASSWORD :'pw';
CREATE SCHEMA auth     AUTHORIZATION tt_auth;
CREATE SCHEMA registry AUTHORIZATION tt_registry;
CREATE SCHEMA scan     AUTHORIZATION tt_scan;
CREATE SCHEMA billing  AUTHORIZATION tt_billing;
CREATE SCHEMA stats    AUTHORIZATION tt_stats;
-- Nobody but a schema's owner creates objects in `public`.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
SQL
