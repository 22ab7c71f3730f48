#!/usr/bin/env bash
# `make test`: start what the tests need (Postgres, Redis, the Python venv, Chromium and
# playwright-core for the browser tests), build the binaries the
# process tests spawn, and run the whole suite with nextest.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
bash scripts/stack.sh up >/dev/null
eval "$(bash scripts/stack.sh env | sed 's/^/export /')"
# Each test makes its own database and drops it when it passes (tests/src/lib.rs,
# fresh_database); a failed test's is kept for looking into, and those the last runs kept (or
# left when killed) are dropped now (about 10 MB each).
bash scripts/stack.sh psql -d postgres -Atc \
  "SELECT datname FROM pg_database WHERE datname ~ '^tt_(run_)?[0-9a-f]{32}$'" \
  | while read -r db; do
      bash scripts/stack.sh psql -d postgres -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null || true
    done
bash scripts/venv.sh
bash scripts/browser-deps.sh
if ! command -v cargo-nextest >/dev/null && ! cargo nextest --version >/dev/null 2>&1; then
  echo "[test] installing cargo-nextest" >&2
  cargo install --locked cargo-nextest
fi
cargo build --workspace --bins
cargo nextest run --workspace --no-fail-fast "$@"
