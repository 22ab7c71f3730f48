#!/usr/bin/env bash
# `make bench-smoke`: a short smoke of the benchmark tool, for CI. Checks that it works (every
# command exits 0, every scenario's operations succeed, no 5xx and no unanswered request), not how
# fast: debug builds, 50,000 bags, 10-15 s per scenario.
#
# Starts its own stack (scripts/run.sh) on non-default ports, with its own state directory,
# database and Redis key prefix, so it clashes neither with `make run` nor with the tests; Postgres
# and Redis come from scripts/stack.sh (started when not running). Ends with the line
# `bench smoke: N passed, M failed`.
#
# Knobs: BENCH_SMOKE_PORT_BASE (default 18050: gRPC 18051-18055, admin 18061-18066, gateway 18080;
# below the kernel's ephemeral port range, so no outgoing connection can be holding them).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

BASE=${BENCH_SMOKE_PORT_BASE:-18050}
STATE="$ROOT/.local/bench-smoke"
DB=tt_bench_smoke
PREFIX="tt_bench_smoke_$$"
GATEWAY_PORT=$((BASE + 30))
URL="http://127.0.0.1:$GATEWAY_PORT"
BENCH="${CARGO_TARGET_DIR:-$ROOT/target}/debug/tracetrack-bench"

say() { echo "[bench-smoke] $*" >&2; }
PASSED=0
FAILED=0
step() { # name command…
  local name=$1; shift
  say "── $name: $*"
  if "$@"; then PASSED=$((PASSED + 1)); say "ok: $name"; else FAILED=$((FAILED + 1)); say "FAILED: $name"; fi
}

export TT_STATE_DIR="$STATE/run" TT_DB_NAME="$DB"
export TT_AUTH_PORT=$((BASE + 1)) TT_REGISTRY_PORT=$((BASE + 2)) TT_SCAN_PORT=$((BASE + 3))
export TT_BILLING_PORT=$((BASE + 4)) TT_STATS_PORT=$((BASE + 5))
export TT_AUTH_ADMIN_PORT=$((BASE + 11)) TT_REGISTRY_ADMIN_PORT=$((BASE + 12)) TT_SCAN_ADMIN_PORT=$((BASE + 13))
export TT_BILLING_ADMIN_PORT=$((BASE + 14)) TT_STATS_ADMIN_PORT=$((BASE + 15)) TT_GATEWAY_ADMIN_PORT=$((BASE + 16))
export TT_GATEWAY_PORT=$GATEWAY_PORT
# Streams, relay epochs and rate-limit windows of this stack stay apart from every other one.
export TRACETRACK_EVENTS__KEY_PREFIX="$PREFIX" TRACETRACK_REDIS_KEY_PREFIX="$PREFIX"

for p in "$TT_AUTH_PORT" "$TT_REGISTRY_PORT" "$TT_SCAN_PORT" "$TT_BILLING_PORT" "$TT_STATS_PORT" \
         "$TT_AUTH_ADMIN_PORT" "$TT_REGISTRY_ADMIN_PORT" "$TT_SCAN_ADMIN_PORT" "$TT_BILLING_ADMIN_PORT" \
         "$TT_STATS_ADMIN_PORT" "$TT_GATEWAY_ADMIN_PORT" "$GATEWAY_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    say "port $p is in use (another bench-smoke?); set BENCH_SMOKE_PORT_BASE"; exit 1
  fi
done

bash scripts/stack.sh up >/dev/null
bash scripts/stack.sh psql -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
rm -rf "$STATE"
mkdir -p "$STATE"

say "building (debug)"
cargo build --bins -q

RUN_PID=""
stop_stack() {
  if [[ -n $RUN_PID ]] && kill -0 "$RUN_PID" 2>/dev/null; then
    kill -TERM "$RUN_PID" 2>/dev/null || true
    wait "$RUN_PID" 2>/dev/null || true
  fi
  RUN_PID=""
}
cleanup() {
  stop_stack
  if command -v redis-cli >/dev/null; then
    redis-cli -p "${TT_REDIS_PORT:-56379}" --scan --pattern "$PREFIX:*" 2>/dev/null \
      | xargs -r redis-cli -p "${TT_REDIS_PORT:-56379}" DEL >/dev/null 2>&1 || true
  fi
  bash scripts/stack.sh psql -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT

say "starting the stack on $URL (logs in $STATE/run/logs)"
bash scripts/run.sh >"$STATE/stack.log" 2>&1 &
RUN_PID=$!
for _ in $(seq 1 600); do
  [[ -f $STATE/run/ready ]] && break
  if ! kill -0 "$RUN_PID" 2>/dev/null; then say "the stack did not start:"; tail -n 40 "$STATE/stack.log" >&2; exit 1; fi
  sleep 0.5
done
[[ -f $STATE/run/ready ]] || { say "the stack was not ready in 300 s"; tail -n 40 "$STATE/stack.log" >&2; exit 1; }

# shellcheck disable=SC1091
source "$STATE/run/secrets.env"
export TRACETRACK_ADMIN_PASSWORD="$ADMIN_PASSWORD"
COMMON=(--base-url "$URL" --session-cache "$STATE/sessions.json")
SMOKE_STARTED=$(date +%s)

step "seed 50,000 bags, users, bills; verify through the API" \
  "$BENCH" seed --bags 50000 \
  --registry-url "http://127.0.0.1:$TT_REGISTRY_PORT" --dispatchers 30 --billers 12 --admins 4 \
  --bills 10 --bill-size 5 --verify-timeout-secs 60 "${COMMON[@]}"
step "run scan-storm" "$BENCH" run --scenario scan-storm --vus 16 --seconds 10 --warmup-seconds 1 \
  --database-url "postgres://postgres@127.0.0.1:${TT_PG_PORT:-55432}/$DB" \
  --check --json "$STATE/scan-storm.json" "${COMMON[@]}"
step "run mixed" "$BENCH" run --scenario mixed --vus 40 --seconds 15 --warmup-seconds 1 \
  --think-scale 0.5 --check --json "$STATE/mixed.json" "${COMMON[@]}"
step "run lookup" "$BENCH" run --scenario lookup --vus 16 --rate 200 --seconds 10 --warmup-seconds 1 \
  --check --json "$STATE/lookup.json" "${COMMON[@]}"
step "run scan-storm at a fixed rate" "$BENCH" run --scenario scan-storm --vus 8 --rate 50 --seconds 5 \
  --warmup-seconds 1 --check --json "$STATE/scan-storm-rate.json" "${COMMON[@]}"
PREVIOUS=$(git log -1 --diff-filter=A --format= --name-only -- 'benchmarks/*.json' 2>/dev/null | head -n 1 || true)
[[ -n $PREVIOUS && -f $PREVIOUS ]] && PREVIOUS_ARGS=(--previous "$PREVIOUS") || PREVIOUS_ARGS=()
step "summary of the runs" "$BENCH" summary --pgbench-tps 1000 --pgbench "not run in the smoke" "${PREVIOUS_ARGS[@]}" \
  --meta "note=bench smoke" --json-out "$STATE/summary.json" --markdown-out "$STATE/summary.md" \
  --plots-dir "$STATE/plots" \
  "$STATE/scan-storm.json" "$STATE/mixed.json" "$STATE/lookup.json" "$STATE/scan-storm-rate.json"
costed() { grep -q "Rows written per scan" "$STATE/summary.md" && grep -q "CPU per scan, by process" "$STATE/summary.md"; }
step "the summary says what a scan cost (rows written, CPU per process)" costed
# A latency plot per run plus the throughput plot, each an SVG that parses as XML and is shown by
# the markdown (and the comparison with the previous run when there is one).
plotted() {
  local svgs=("$STATE"/plots/latency-*.svg "$STATE/plots/throughput.svg")
  # The comparison is drawn when the markdown's comparison table has a run's row.
  if awk '/^### Against the previous run/ { a = 1; next } /^### / { a = 0 }
          a && /^\| / && !/^\| (run|-|---)/ { found = 1 } END { exit !found }' "$STATE/summary.md"; then
    svgs+=("$STATE/plots/against-previous.svg")
  fi
  [[ ${#svgs[@]} -ge 5 ]] || { say "expected 4 latency plots and a throughput plot: ${svgs[*]}"; return 1; }
  local f
  for f in "${svgs[@]}"; do
    [[ -s $f ]] || { say "missing: $f"; return 1; }
    grep -qF "]($f)" "$STATE/summary.md" || { say "the summary does not show $f"; return 1; }
  done
  python3 -c 'import sys, xml.etree.ElementTree as ET
for f in sys.argv[1:]:
    root = ET.parse(f).getroot()
    assert root.tag.endswith("svg"), f"{f}: root is {root.tag}"' "${svgs[@]}"
}
step "the summary plots latency percentiles, throughput and the previous run (SVG, linked)" plotted
say "tool steps took $(( $(date +%s) - SMOKE_STARTED )) s"

stopped() { stop_stack; ! (exec 3<>"/dev/tcp/127.0.0.1/$GATEWAY_PORT") 2>/dev/null; }
step "the stack stops on SIGTERM" stopped

echo "bench smoke: $PASSED passed, $FAILED failed"
[[ $FAILED -eq 0 ]]
