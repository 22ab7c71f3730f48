-- Postgres roles for one TraceTrack service on Kubernetes: an owner role that runs the DDL (the
-- migration Job and the partition CronJob use it: Secret <service>-database, key `migrate-url`) and
-- a runtime role with data access only (the Deployment: key `url`). Run it once per service, as a
-- superuser (or your cloud's admin role, after `GRANT <owner> TO CURRENT_USER` where required), in
-- the database that service uses:
--
--   psql "$ADMIN_URL" -v ON_ERROR_STOP=1 \
--     -v schema=auth -v owner=tt_auth_owner -v app=tt_auth \
--     -v owner_password="$AUTH_OWNER_PASSWORD" -v app_password="$AUTH_APP_PASSWORD" \
--     -f deploy/k8s/postgres-roles.sql
--
-- Schemas: auth, registry (bag-registry), scan, billing, stats. The services' SQL is
-- schema-qualified and each pool sets its own search_path, so one database for all five works as
-- well as one database each. Run it before the first migration; the default privileges then cover
-- every table and partition the owner creates later.

CREATE ROLE :"owner" LOGIN PASSWORD :'owner_password';
CREATE ROLE :"app" LOGIN PASSWORD :'app_password';
CREATE SCHEMA :"schema" AUTHORIZATION :"owner";

-- bag-registry's imports use a temporary table.
GRANT CONNECT, TEMPORARY ON DATABASE :"DBNAME" TO :"app";
GRANT USAGE ON SCHEMA :"schema" TO :"app";

-- Everything the owner creates later (migrations, monthly partitions) is readable and writable by
-- the runtime role, and nothing more: no CREATE, ALTER, DROP or TRUNCATE.
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA :"schema"
  GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO :"app";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA :"schema"
  GRANT USAGE, SELECT ON SEQUENCES TO :"app";
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA :"schema" TO :"app";
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA :"schema" TO :"app";
