#!/usr/bin/env bash
# `make chaos`: the whole-stack fault suite (issue 20). Builds the binaries, then
# `tracetrack-bench chaos` starts a private stack — its own Postgres cluster (.local/chaos/pg),
# its own redis-server (.local/chaos/redis) and the six binaries on their own ports, configured as
# scripts/run.sh does — drives 12 retrying dispatchers through the gateway and SIGKILLs scan,
# bag-registry, auth, billing, stats, the gateway, Redis (restarted empty, then from a stale
# snapshot while stats lags) and the Postgres postmaster in turn, checking in SQL after each.
# The shared stack (scripts/stack.sh up) is never touched: only its install step is used.
# The report is printed and written to .local/chaos/report.md; exit status 1 when anything failed
# (then the cluster's data stays for a look; the logs in .local/chaos/logs always do).
#
# Knobs: CHAOS_PORT_BASE (default 18150: gRPC 18151-18155, admin 18161-18166, gateway 18180,
# Postgres 18190, Redis 18191); extra arguments go to `tracetrack-bench chaos` (see its --help),
# e.g. `scripts/chaos.sh --victims scan,postgres`.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

BASE=${CHAOS_PORT_BASE:-18150}
STATE="$ROOT/.local/chaos"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug"
say() { echo "[chaos] $*" >&2; }

for off in 1 2 3 4 5 11 12 13 14 15 16 30 40 41; do
  p=$((BASE + off))
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    say "port $p is in use (another chaos run?); set CHAOS_PORT_BASE"; exit 1
  fi
done

# Postgres and Redis installed (nothing started); Postgres's binaries and the user it runs as.
eval "$(bash scripts/stack.sh install | grep -E '^(PGBIN|PG_USER)=')"
[[ $PG_USER == "$(id -un)" ]] && PG_USER=""

# A fresh state directory; the cluster must be reachable by its user (as in scripts/stack.sh:
# when root runs it and the checkout is private, it lives under /var/tmp).
rm -rf "$STATE"
mkdir -p "$STATE"
PG_DIR="$STATE/pg"
if [[ -n $PG_USER ]] && ! runuser -u "$PG_USER" -- test -x "$STATE" 2>/dev/null; then
  PG_DIR="/var/tmp/tracetrack-chaos-$(printf %s "$ROOT" | sha1sum | cut -c1-12)"
fi
rm -rf "$PG_DIR"
mkdir -p "$PG_DIR"
[[ -n $PG_USER ]] && chown "$PG_USER" "$PG_DIR"

# Whatever happens to the driver, nothing it started outlives this script.
cleanup() {
  local f pid
  for f in "$STATE"/pids/*.pid; do
    [[ -f $f ]] || continue
    pid=$(cat "$f")
    kill -0 "$pid" 2>/dev/null && { kill -CONT "$pid" 2>/dev/null; kill -KILL "$pid" 2>/dev/null; } || true
  done
  if [[ -f $PG_DIR/data/postmaster.pid ]]; then
    if [[ -n $PG_USER ]]; then
      runuser -u "$PG_USER" -- "$PGBIN/pg_ctl" -D "$PG_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
    else
      "$PGBIN/pg_ctl" -D "$PG_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
  fi
}
trap cleanup EXIT

say "building (debug)"
cargo build --bins -q

started=$(date +%s)
args=(chaos --bin-dir "$BIN" --state-dir "$STATE" --pg-bin "$PGBIN" --pg-dir "$PG_DIR" --port-base "$BASE")
[[ -n $PG_USER ]] && args+=(--pg-user "$PG_USER")
status=0
"$BIN/tracetrack-bench" "${args[@]}" "$@" || status=$?
say "chaos run took $(( $(date +%s) - started )) s (exit status $status)"
# The cluster (about 500 MB) is kept only when something failed, for a closer look.
if [[ $status -eq 0 ]]; then cleanup; rm -rf "$PG_DIR" "$STATE/redis/dump.rdb"; fi
exit "$status"
