#!/usr/bin/env bash
# `make run`: the local stack (Postgres, Redis), every service built so far on fixed default
# ports, and where to go. Ctrl-C stops the services, and Postgres/Redis if this script started them.
#
# Knobs (environment): PROFILE=release, TT_STATE_DIR (secrets and logs, default .local/run),
# TT_DB_NAME (default tracetrack), TT_<SVC>_PORT / TT_<SVC>_ADMIN_PORT for AUTH, REGISTRY, SCAN,
# BILLING, STATS (50051-50055 / 9101-9105), GATEWAY (8080 / 9100).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PROFILE=${PROFILE:-debug}
STATE=${TT_STATE_DIR:-$ROOT/.local/run}
DB=${TT_DB_NAME:-tracetrack}
PG_PORT=${TT_PG_PORT:-55432}
REDIS_PORT=${TT_REDIS_PORT:-56379}
AUTH_PORT=${TT_AUTH_PORT:-50051}
AUTH_ADMIN_PORT=${TT_AUTH_ADMIN_PORT:-9101}
REGISTRY_PORT=${TT_REGISTRY_PORT:-50052}
REGISTRY_ADMIN_PORT=${TT_REGISTRY_ADMIN_PORT:-9102}
SCAN_PORT=${TT_SCAN_PORT:-50053}
SCAN_ADMIN_PORT=${TT_SCAN_ADMIN_PORT:-9103}
BILLING_PORT=${TT_BILLING_PORT:-50054}
BILLING_ADMIN_PORT=${TT_BILLING_ADMIN_PORT:-9104}
STATS_PORT=${TT_STATS_PORT:-50055}
STATS_ADMIN_PORT=${TT_STATS_ADMIN_PORT:-9105}
GATEWAY_PORT=${TT_GATEWAY_PORT:-8080}
GATEWAY_ADMIN_PORT=${TT_GATEWAY_ADMIN_PORT:-9100}
mkdir -p "$STATE/logs"

say() { echo "[run] $*" >&2; }

stack_out=$(bash scripts/stack.sh up)
STARTED=${stack_out#STARTED=}
PIDS=()
cleanup() {
  trap - INT TERM EXIT
  say "stopping services"
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  [[ $STARTED == *redis* ]] && bash scripts/stack.sh down-redis || true
  [[ $STARTED == *pg* ]] && bash scripts/stack.sh down-pg || true
  say "stopped"
}
trap cleanup EXIT
trap 'cleanup; exit 0' INT TERM

# Secrets for this checkout, made once: each service's token and the first admin's password.
SECRETS="$STATE/secrets.env"
if [[ ! -f $SECRETS ]]; then
  rnd() { head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c "$1"; }
  {
    for svc in gateway bag_registry scan billing stats; do echo "TOKEN_${svc^^}=svc-$(rnd 40)"; done
    echo "ADMIN_PASSWORD=Tt-$(rnd 12)-7a"
  } > "$SECRETS"
  chmod 600 "$SECRETS"
fi
# shellcheck disable=SC1090
source "$SECRETS"

# One database; each service its own role owning its own schema.
if ! bash scripts/stack.sh psql -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1; then
  bash scripts/stack.sh psql -d postgres -c "CREATE DATABASE \"$DB\""
fi
for pair in auth:tt_auth registry:tt_registry scan:tt_scan billing:tt_billing stats:tt_stats; do
  schema=${pair%%:*}; role=${pair##*:}
  bash scripts/stack.sh psql -d "$DB" <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$role') THEN CREATE ROLE $role LOGIN; END IF;
END \$\$;
CREATE SCHEMA IF NOT EXISTS $schema AUTHORIZATION $role;
SQL
done

say "building ($PROFILE)"
if [[ $PROFILE == release ]]; then cargo build --release --bins -q; else cargo build --bins -q; fi
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE"

export TRACETRACK_REDIS__URL="redis://127.0.0.1:$REDIS_PORT"
export TRACETRACK_DATABASE__MIGRATE_ON_START=true

start() { # name binary grpc-port admin-port role [extra env…]
  local name=$1 bin=$2 port=$3 admin=$4 role=$5; shift 5
  env TRACETRACK_GRPC_ADDR="127.0.0.1:$port" TRACETRACK_ADMIN_ADDR="127.0.0.1:$admin" \
      TRACETRACK_DATABASE__URL="postgres://$role@127.0.0.1:$PG_PORT/$DB" "$@" \
      "$BIN/$bin" >"$STATE/logs/$name.log" 2>&1 &
  PIDS+=($!)
  local i
  for i in $(seq 1 300); do
    if "$BIN/$bin" health --addr "127.0.0.1:$port" 2>/dev/null; then say "$name ready on 127.0.0.1:$port"; return 0; fi
    if ! kill -0 "${PIDS[-1]}" 2>/dev/null; then say "$name exited:"; tail -n 30 "$STATE/logs/$name.log" >&2; exit 1; fi
    sleep 0.2
  done
  say "$name did not become ready:"; tail -n 30 "$STATE/logs/$name.log" >&2; exit 1
}

start auth tracetrack-auth "$AUTH_PORT" "$AUTH_ADMIN_PORT" tt_auth \
  TRACETRACK_BOOTSTRAP_ADMIN_PASSWORD="$ADMIN_PASSWORD" \
  TRACETRACK_SECOND_FACTOR__ENCRYPTION_KEY="${TT_2FA_KEY:-ZGV2LW9ubHktbWFrZS1ydW4tc2Vjb25kLWZhY3RvciE=}" \
  TRACETRACK_SERVICE_TOKENS__GATEWAY="$TOKEN_GATEWAY" \
  TRACETRACK_SERVICE_TOKENS__BAG-REGISTRY="$TOKEN_BAG_REGISTRY" \
  TRACETRACK_SERVICE_TOKENS__SCAN="$TOKEN_SCAN" \
  TRACETRACK_SERVICE_TOKENS__BILLING="$TOKEN_BILLING" \
  TRACETRACK_SERVICE_TOKENS__STATS="$TOKEN_STATS"

export TRACETRACK_AUTH__URL="http://127.0.0.1:$AUTH_PORT"
start bag-registry tracetrack-bag-registry "$REGISTRY_PORT" "$REGISTRY_ADMIN_PORT" tt_registry \
  TRACETRACK_AUTH__SERVICE_TOKEN="$TOKEN_BAG_REGISTRY"
start scan tracetrack-scan "$SCAN_PORT" "$SCAN_ADMIN_PORT" tt_scan \
  TRACETRACK_AUTH__SERVICE_TOKEN="$TOKEN_SCAN" \
  TRACETRACK_REGISTRY_URL="http://127.0.0.1:$REGISTRY_PORT"
start billing tracetrack-billing "$BILLING_PORT" "$BILLING_ADMIN_PORT" tt_billing \
  TRACETRACK_AUTH__SERVICE_TOKEN="$TOKEN_BILLING" \
  TRACETRACK_REGISTRY_URL="http://127.0.0.1:$REGISTRY_PORT"

# Reports: bill figures from billing. Without TT_SMTP_HOST there is no SMTP server and reports
# are only previewed; TT_SMTP_HOST, TT_SMTP_PORT and TT_REPORT_RECIPIENTS turn mail on.
start stats tracetrack-stats "$STATS_PORT" "$STATS_ADMIN_PORT" tt_stats \
  TRACETRACK_AUTH__SERVICE_TOKEN="$TOKEN_STATS" \
  TRACETRACK_REGISTRY_URL="http://127.0.0.1:$REGISTRY_PORT" \
  TRACETRACK_BILLING_URL="http://127.0.0.1:$BILLING_PORT" \
  TRACETRACK_PUBLIC_BASE_URL="http://127.0.0.1:$GATEWAY_PORT" \
  TRACETRACK_SMTP__HOST="${TT_SMTP_HOST:-}" TRACETRACK_SMTP__PORT="${TT_SMTP_PORT:-587}" \
  TRACETRACK_REPORTS__RECIPIENTS="${TT_REPORT_RECIPIENTS:-}"

# The gateway has no database; it is ready when /healthz answers.
env TRACETRACK_HTTP_ADDR="127.0.0.1:$GATEWAY_PORT" TRACETRACK_ADMIN_ADDR="127.0.0.1:$GATEWAY_ADMIN_PORT" \
    TRACETRACK_AUTH__SERVICE_TOKEN="$TOKEN_GATEWAY" \
    TRACETRACK_REGISTRY_URL="http://127.0.0.1:$REGISTRY_PORT" TRACETRACK_SCAN_URL="http://127.0.0.1:$SCAN_PORT" \
    TRACETRACK_STATS_URL="http://127.0.0.1:$STATS_PORT" \
    TRACETRACK_BILLING_URL="http://127.0.0.1:${BILLING_PORT:-50054}" \
    "$BIN/tracetrack-gateway" >"$STATE/logs/gateway.log" 2>&1 &
PIDS+=($!)
for i in $(seq 1 300); do
  if "$BIN/tracetrack-gateway" health --addr "127.0.0.1:$GATEWAY_PORT" 2>/dev/null; then say "gateway ready on http://127.0.0.1:$GATEWAY_PORT"; break; fi
  if ! kill -0 "${PIDS[-1]}" 2>/dev/null; then say "gateway exited:"; tail -n 30 "$STATE/logs/gateway.log" >&2; exit 1; fi
  [[ $i == 300 ]] && { say "gateway did not come up"; exit 1; }
  sleep 0.2
done

cat >&2 <<BANNER

  TraceTrack is running:   http://127.0.0.1:$GATEWAY_PORT   (API under /api/v1, OpenAPI at /api/v1/openapi.json)
    auth (gRPC)          127.0.0.1:$AUTH_PORT     metrics http://127.0.0.1:$AUTH_ADMIN_PORT/metrics
    bag-registry (gRPC)  127.0.0.1:$REGISTRY_PORT     metrics http://127.0.0.1:$REGISTRY_ADMIN_PORT/metrics
    scan (gRPC)          127.0.0.1:$SCAN_PORT     metrics http://127.0.0.1:$SCAN_ADMIN_PORT/metrics
    billing (gRPC)       127.0.0.1:$BILLING_PORT     metrics http://127.0.0.1:$BILLING_ADMIN_PORT/metrics
    stats (gRPC)         127.0.0.1:$STATS_PORT     metrics http://127.0.0.1:$STATS_ADMIN_PORT/metrics
    log in as            admin / $ADMIN_PASSWORD   (kept in $SECRETS)
    try it               curl -s http://127.0.0.1:$GATEWAY_PORT/api/v1/auth/login -H 'content-type: application/json' -d '{"username":"admin","password":"…"}'   (gRPC Login answers only the gateway)
    logs                 $STATE/logs/
    gateway metrics      http://127.0.0.1:$GATEWAY_ADMIN_PORT/metrics
  Open http://127.0.0.1:$GATEWAY_PORT/ in a browser for the web client (scan station, bags, bills, users, exports).
  Ctrl-C stops everything.

BANNER
echo "READY" > "$STATE/ready"
# Exit (and clean up) as soon as any service dies, or on Ctrl-C.
wait -n "${PIDS[@]}" || true
say "a service exited; see $STATE/logs/"
exit 1
