#!/usr/bin/env bash
# Overload: does the stack shed load instead of queueing without bound?
#
# Starts the stack (scripts/run.sh, PROFILE as given, debug by default) on its own ports and
# database, seeds 20,000 bags, measures what the box answers with a closed loop (64 dispatchers'
# child scans), then offers twice that at a fixed rate from 1,500 virtual users and prints, for
# both runs: answered per second, errors by code, 5xx, and the latency of all and of the answered
# requests. Expected: 429 `overloaded` (with Retry-After) for what cannot be served, no 5xx, and
# answered requests well inside the request timeout. Leaves its JSON in .local/overload/.
#
#   bash tests/bench/overload.sh            # after `make build` (or PROFILE=release after a release build)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
BASE=${OVERLOAD_PORT_BASE:-19050}
OUT=$ROOT/.local/overload
export TT_STATE_DIR=$OUT/run TT_DB_NAME=tt_overload
export TT_AUTH_PORT=$((BASE+1)) TT_REGISTRY_PORT=$((BASE+2)) TT_SCAN_PORT=$((BASE+3)) TT_BILLING_PORT=$((BASE+4)) TT_STATS_PORT=$((BASE+5))
export TT_AUTH_ADMIN_PORT=$((BASE+11)) TT_REGISTRY_ADMIN_PORT=$((BASE+12)) TT_SCAN_ADMIN_PORT=$((BASE+13)) TT_BILLING_ADMIN_PORT=$((BASE+14)) TT_STATS_ADMIN_PORT=$((BASE+15)) TT_GATEWAY_ADMIN_PORT=$((BASE+16))
export TT_GATEWAY_PORT=$((BASE+30))
URL=http://127.0.0.1:$TT_GATEWAY_PORT
bash scripts/stack.sh up >/dev/null
bash scripts/stack.sh psql -d postgres -qc "DROP DATABASE IF EXISTS tt_overload WITH (FORCE)" >/dev/null
rm -rf "$OUT"; mkdir -p "$OUT"
bash scripts/run.sh >"$OUT/stack.log" 2>&1 &
RUN_PID=$!
trap 'kill -TERM $RUN_PID 2>/dev/null; wait $RUN_PID 2>/dev/null' EXIT
for _ in $(seq 1 600); do [[ -f $TT_STATE_DIR/ready ]] && break; sleep 0.5; done
[[ -f $TT_STATE_DIR/ready ]] || { echo "the stack did not start" >&2; tail -n 40 "$OUT/stack.log" >&2; exit 1; }
# shellcheck disable=SC1091
source "$TT_STATE_DIR/secrets.env"
export TRACETRACK_ADMIN_PASSWORD="$ADMIN_PASSWORD"
BENCH=target/${PROFILE:-debug}/tracetrack-bench
COMMON=(--base-url "$URL" --session-cache "$OUT/sessions.json")
"$BENCH" seed --bags 20000 --registry-url "http://127.0.0.1:$TT_REGISTRY_PORT" --dispatchers 100 \
  --billers 2 --admins 1 --bills 2 --bill-size 2 --verify-timeout-secs 60 "${COMMON[@]}"
"$BENCH" run --scenario scan-storm --vus 64 --users 64 --seconds 20 --warmup-seconds 3 \
  --json "$OUT/closed.json" "${COMMON[@]}"
CAP=$(python3 -c "import json;print(json.load(open('$OUT/closed.json'))['total']['ok_per_s'])")
RATE=$(python3 -c "print(round(2*$CAP))")
echo "overload: the closed loop answered $CAP/s; offering $RATE/s"
"$BENCH" run --scenario scan-storm --vus 1500 --users 100 --rate "$RATE" --seconds 30 \
  --warmup-seconds 3 --timeout-ms 30000 --json "$OUT/fixed.json" "${COMMON[@]}"
python3 - "$OUT" <<'PY'
import json, sys
for name in ["closed", "fixed"]:
    d = json.load(open(f"{sys.argv[1]}/{name}.json"))
    t = d["total"]
    lat = lambda l: l and f"p50 {l['p50']:.0f} / p99 {l['p99']:.0f} / max {l['max']:.0f} ms"
    print(f"{name}: {d['mode']} rate={d.get('rate_per_s')} vus={d['vus']} requests={t['count']} "
          f"answered/s={t['ok_per_s']} errors={t['errors']} 5xx={t['status_5xx']}")
    print(f"   all:      {lat(t['latency_ms'])}")
    print(f"   answered: {lat(t.get('ok_latency_ms'))}")
PY
curl -s "http://127.0.0.1:$TT_GATEWAY_ADMIN_PORT/metrics" | grep -E "^gateway_(shed|timed_out)_total" || true
