#!/usr/bin/env bash
# `make bench`: the benchmark profile against a release build, on the local Postgres and Redis.
#
#  1. builds everything in release;
#  2. starts the stack (`PROFILE=release TT_DB_NAME=tt_bench scripts/run.sh`, default ports, in the
#     background; stopped with SIGTERM at the end);
#  3. seeds when needed (BENCH_BAGS bags, default 4,000,000; `seed` skips the import when the
#     database holds them already) plus the benchmark users and bills, verified through the API;
#  4. runs the standard profile through the gateway's HTTP API with the load generator pinned to
#     one core (taskset; the services are not pinned): scan-storm closed loop, scan-storm at
#     1,000 scans/s, mixed with 1,000 virtual users and with 50 (the old system's scale), lookup
#     at 1,000/s and closed loop;
#  5. runs pgbench (TPC-B, scale 20, database tt_pgbench on the same Postgres) and relates the
#     scan throughput to its TPS;
#  6. appends the results, the command, date, commit and core count to BENCHMARKS.md and keeps
#     the raw JSON in benchmarks/<date>-<commit>.json. Each run reports the rows Postgres wrote
#     per table and the CPU each process used inside its measured window, per scan (or request);
#     the summary compares every figure with the previous run's JSON. SVG plots (each run's latency
#     percentile curves per operation, throughput against virtual users, this run against the
#     previous one) go to benchmarks/<date>-<commit>/, shown by the appended section.
#
# Knobs: BENCH_BAGS, BENCH_SECONDS (per run, default 60), BENCH_DB (tt_bench), BENCH_CPU (the core
# for the load generator, default the last), BENCH_STORM_VUS (200), BENCH_MIXED_VUS (1000),
# BENCH_LOOKUP_VUS (600 for the closed-loop lookup: enough accounts to stay under the gateway's
# per-user limit), BENCH_RATE (1000), BENCH_SKIP_PGBENCH=1, BENCH_FRESH=1 (drop the bench
# database first, so that it is seeded anew).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

BAGS=${BENCH_BAGS:-4000000}
SECS=${BENCH_SECONDS:-60}
DB=${BENCH_DB:-tt_bench}
NPROC=$(nproc)
CPU=${BENCH_CPU:-$((NPROC - 1))}
STORM_VUS=${BENCH_STORM_VUS:-200}
MIXED_VUS=${BENCH_MIXED_VUS:-1000}
LOOKUP_VUS=${BENCH_LOOKUP_VUS:-600}
RATE=${BENCH_RATE:-1000}
PG_PORT=${TT_PG_PORT:-55432}
STATE=${TT_STATE_DIR:-$ROOT/.local/run}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
# The commit measured: the one checked out when the run starts.
COMMIT=$(git rev-parse --short HEAD)
DIRTY=""
git diff --quiet HEAD -- 2>/dev/null || DIRTY=" (with uncommitted changes)"
OUT="$ROOT/.local/bench/$STAMP"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
BENCH="$BIN/tracetrack-bench"
URL="http://127.0.0.1:${TT_GATEWAY_PORT:-8080}"
mkdir -p "$OUT"

say() { echo "[bench] $*" >&2; }

COMMAND="make bench"
for v in BENCH_FRESH BENCH_BAGS BENCH_SECONDS BENCH_DB BENCH_CPU BENCH_STORM_VUS BENCH_MIXED_VUS BENCH_LOOKUP_VUS BENCH_RATE; do
  [[ -n ${!v:-} ]] && COMMAND="$v=${!v} $COMMAND"
done

for p in "${TT_GATEWAY_PORT:-8080}" "${TT_AUTH_PORT:-50051}" "${TT_REGISTRY_PORT:-50052}" "${TT_SCAN_PORT:-50053}" \
         "${TT_BILLING_PORT:-50054}" "${TT_STATS_PORT:-50055}"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    say "port $p is in use: stop \`make run\` (or whatever holds it) first"; exit 1
  fi
done

say "building (release)"
cargo build --release --bins -q

RUN_PID=""
stop_stack() {
  if [[ -n $RUN_PID ]] && kill -0 "$RUN_PID" 2>/dev/null; then
    say "stopping the stack"
    kill -TERM "$RUN_PID" 2>/dev/null || true
    wait "$RUN_PID" 2>/dev/null || true
  fi
  RUN_PID=""
}
trap stop_stack EXIT

if [[ -n ${BENCH_FRESH:-} ]]; then
  say "BENCH_FRESH: dropping database $DB"
  bash scripts/stack.sh up >/dev/null
  bash scripts/stack.sh psql -d postgres -c "DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)" >/dev/null
fi

say "starting the stack (release, database $DB; logs in $STATE/logs)"
rm -f "$STATE/ready"
# The bench database's streams, relay epochs and rate-limit windows get their own Redis prefix,
# so a `make run` on the same Redis never consumes them.
PROFILE=release TT_DB_NAME="$DB" TRACETRACK_EVENTS__KEY_PREFIX="$DB" TRACETRACK_REDIS_KEY_PREFIX="$DB" \
  bash scripts/run.sh >"$OUT/stack.log" 2>&1 &
RUN_PID=$!
for _ in $(seq 1 1200); do
  [[ -f $STATE/ready ]] && break
  if ! kill -0 "$RUN_PID" 2>/dev/null; then say "the stack did not start:"; tail -n 40 "$OUT/stack.log" >&2; exit 1; fi
  sleep 0.5
done
[[ -f $STATE/ready ]] || { say "the stack was not ready in 10 minutes"; exit 1; }
# shellcheck disable=SC1091
source "$STATE/secrets.env"
export TRACETRACK_ADMIN_PASSWORD="$ADMIN_PASSWORD"

PIN=(taskset -c "$CPU")
say "the load generator runs pinned to CPU $CPU of $NPROC (taskset -c $CPU); the services are not pinned"

say "seeding $BAGS bags when needed"
"${PIN[@]}" "$BENCH" seed --bags "$BAGS" --base-url "$URL" 2>&1 | tee "$OUT/seed.log"

# CPU seconds used per process group, from ps's cumulative times.
cpu_snapshot() {
  ps -eo comm=,times= | awk '
    { c=$1; t=$2
      if (c ~ /^tracetrack-auth/) g="auth"; else if (c ~ /^tracetrack-bag/) g="bag-registry";
      else if (c ~ /^tracetrack-scan/) g="scan"; else if (c ~ /^tracetrack-bil/) g="billing";
      else if (c ~ /^tracetrack-sta/) g="stats"; else if (c ~ /^tracetrack-gat/) g="gateway";
      else if (c ~ /^tracetrack-ben/) g="load generator"; else if (c ~ /^postgres/) g="postgres";
      else if (c ~ /^redis/) g="redis"; else next
      s[g]+=t }
    END { for (g in s) print g "\t" s[g] }'
  # The whole machine: busy jiffies (user, nice, system, irq, softirq, steal) from /proc/stat.
  awk '/^cpu / { printf "machine\t%.2f\n", ($2 + $3 + $4 + $7 + $8 + $9) / 100 }' /proc/stat
} 
cpu_sorted() { cpu_snapshot | sort; }
CPU_MD="$OUT/cpu.md"
{
  echo "### CPU use per process group during each run (cores busy on average, of $NPROC)"
  echo
  echo "| run | gateway | auth | bag-registry | scan | billing | stats | postgres | redis | load generator | other processes (not the benchmark) | load average before |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
} >"$CPU_MD"

RUN_JSONS=()
RUN_META=()
bench_run() { # label args…
  local label=$1; shift
  local json="$OUT/$label.json"
  local cmd=("${PIN[@]}" "$BENCH" run --base-url "$URL" --seconds "$SECS" --label "$label" --json "$json"
    --database-url "postgres://postgres@127.0.0.1:$PG_PORT/$DB" "$@")
  say "run $label: ${cmd[*]}"
  local t0 before after
  local load; load=$(cut -d' ' -f1-3 /proc/loadavg)
  before=$(cpu_sorted); t0=$(date +%s%N)
  "${cmd[@]}" 2>&1 | tee "$OUT/$label.log"
  after=$(cpu_sorted)
  local wall; wall=$(awk -v a="$t0" -v b="$(date +%s%N)" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
  RUN_JSONS+=("$json")
  local gen; gen=$(grep -oE '"generator_cpu_cores": [0-9.]+' "$json" | awk '{print $2}')
  RUN_META+=(--meta "run $label=taskset -c $CPU tracetrack-bench run --seconds $SECS $*")
  # Groups that started during the run (the load generator) count from zero.
  join -t $'\t' -a 2 -e 0 -o 0,1.2,2.2 <(echo "$before") <(echo "$after") | awk -F'\t' -v w="$wall" -v l="$label" -v la="$load" -v gen="${gen:-0}" '
    { d[$1]=($3-$2)/w; if ($1 != "machine" && $1 != "load generator") ours += d[$1] }
    END { printf "| %s | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %s |\n", l,
          d["gateway"], d["auth"], d["bag-registry"], d["scan"], d["billing"], d["stats"],
          d["postgres"], d["redis"], gen, d["machine"] - ours - gen, la }' >>"$CPU_MD"
}

bench_run scan-storm --scenario scan-storm --vus "$STORM_VUS"
bench_run "scan-storm@${RATE}" --scenario scan-storm --vus "$STORM_VUS" --rate "$RATE"
bench_run mixed --scenario mixed --vus "$MIXED_VUS"
# The old system's own scale (SPEC §6: every operation's p99 ≤ 50 ms at 50 users).
bench_run "mixed@50" --scenario mixed --vus 50
bench_run "lookup@${RATE}" --scenario lookup --vus 200 --rate "$RATE"
bench_run lookup --scenario lookup --vus "$LOOKUP_VUS"

PGBENCH_TPS=""
PGBENCH_DESC=""
if [[ -z ${BENCH_SKIP_PGBENCH:-} ]]; then
  PGBIN=""
  if command -v pg_config >/dev/null && [[ -x "$(pg_config --bindir)/pgbench" ]]; then PGBIN=$(pg_config --bindir); fi
  if [[ -z $PGBIN ]]; then
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do [[ -x $d/pgbench ]] && { PGBIN=$d; break; }; done
  fi
  if [[ -z $PGBIN ]]; then
    say "pgbench not found: no ratio"
  else
    say "pgbench: TPC-B, scale 20, database tt_pgbench (the TraceTrack services idle)"
    bash scripts/stack.sh psql -d postgres -c "DROP DATABASE IF EXISTS tt_pgbench WITH (FORCE)" -c "CREATE DATABASE tt_pgbench" >/dev/null
    PGB=("$PGBIN/pgbench" -h 127.0.0.1 -p "$PG_PORT" -U postgres)
    "${PGB[@]}" -i -s 20 -q tt_pgbench 2>&1 | tail -n 2
    "${PGB[@]}" -c 8 -j 2 -T 30 tt_pgbench 2>&1 | tee "$OUT/pgbench.log"
    PGBENCH_TPS=$(grep -oE 'tps = [0-9.]+' "$OUT/pgbench.log" | head -n 1 | awk '{print $3}')
    PGBENCH_DESC="pgbench -i -s 20; pgbench -c 8 -j 2 -T 30 (TPC-B), PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}')"
  fi
fi

stop_stack

DATE=$(date -u +%Y-%m-%d)
mkdir -p benchmarks
# The previous run's summary (the last one committed to benchmarks/), to show what changed.
PREVIOUS=$(git log -1 --diff-filter=A --format= --name-only -- 'benchmarks/*.json' 2>/dev/null | head -n 1 || true)
[[ -n $PREVIOUS && -f $PREVIOUS ]] || PREVIOUS=""
JSON_OUT="benchmarks/$DATE-$COMMIT.json"
[[ -e $JSON_OUT ]] && JSON_OUT="benchmarks/$DATE-$COMMIT-$(date -u +%H%M).json"
# Next to the JSON, relative to the repository's root, where BENCHMARKS.md is: its links work.
PLOTS_DIR="${JSON_OUT%.json}"
CPU_MODEL=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
MEM=$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)
SUMMARY=("$BENCH" summary --title "$DATE · $COMMIT · $(printf "%'d" "$BAGS") bags · nproc $NPROC"
  --meta "command=$COMMAND" --meta "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  --meta "commit=$COMMIT$DIRTY" --meta "nproc=$NPROC" --meta "cpu=$CPU_MODEL" --meta "memory=$MEM"
  --meta "bags=$BAGS" --meta "database=$DB"
  --meta "load generator=pinned to CPU $CPU with taskset -c $CPU (the services and Postgres share all $NPROC cores, the generator's included)"
  --meta "raw JSON=$JSON_OUT"
  "${RUN_META[@]}"
  --json-out "$JSON_OUT" --markdown-out "$OUT/summary.md" --plots-dir "$PLOTS_DIR")
[[ -n $PGBENCH_TPS ]] && SUMMARY+=(--pgbench-tps "$PGBENCH_TPS" --pgbench "$PGBENCH_DESC")
[[ -n $PREVIOUS ]] && SUMMARY+=(--previous "$PREVIOUS")
"${SUMMARY[@]}" "${RUN_JSONS[@]}" >/dev/null

if [[ ! -f BENCHMARKS.md ]]; then
  cat >BENCHMARKS.md <<'HEAD'
# Benchmarks

Measured with `make bench` (scripts/bench.sh, the `tracetrack-bench` tool in tests/bench). Each
section below is one run, appended by the script; the raw JSON of every run is in `benchmarks/`.
HEAD
fi
{ echo; cat "$OUT/summary.md"; echo; cat "$CPU_MD"; } >>BENCHMARKS.md

cat "$OUT/summary.md"
echo
cat "$CPU_MD"
[[ -n $PGBENCH_TPS ]] && say "pgbench: $PGBENCH_TPS TPS; $(grep -o 'scan throughput / pgbench TPS = [0-9.]*' "$OUT/summary.md" || echo 'no ratio')"
say "appended to BENCHMARKS.md; raw JSON in $JSON_OUT; plots in $PLOTS_DIR/; logs in $OUT"
