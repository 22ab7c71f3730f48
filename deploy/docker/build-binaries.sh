#!/usr/bin/env bash
# Builds the release binaries the image ships. The Dockerfile runs exactly this (`fetch` with the
# network, then `build` with none), and `make deploy-check` runs it on the host, so CI proves the
# image's build works offline without a Docker engine.
#
#   build-binaries.sh fetch        download every locked dependency (needs crates.io)
#   build-binaries.sh build OUT    build offline and copy the binaries into OUT
set -euo pipefail
cd "$(dirname "$0")/../.."

BINS=(
  tracetrack-auth
  tracetrack-bag-registry
  tracetrack-scan
  tracetrack-billing
  tracetrack-stats
  tracetrack-gateway
)
# SQL is checked at run time (`sqlx::query`), so no `.sqlx/` cache is needed; SQLX_OFFLINE makes a
# future compile-time `query!` fail loudly here instead of trying to reach a database the builder
# does not have.
export SQLX_OFFLINE=true

case ${1:-} in
  fetch)
    cargo fetch --locked
    ;;
  build)
    out=${2:?usage: build-binaries.sh build OUT_DIR}
    args=()
    for b in "${BINS[@]}"; do args+=(--bin "$b"); done
    cargo build --release --locked --offline "${args[@]}"
    mkdir -p "$out"
    for b in "${BINS[@]}"; do
      install -m 0755 "${CARGO_TARGET_DIR:-target}/release/$b" "$out/$b"
      # The release profile keeps line tables (~75 MB a binary); the image keeps the symbols, so
      # panics and backtraces still name functions, but not the debug sections (~15 MB a binary).
      strip --strip-debug "$out/$b"
    done
    ls -l "$out"
    ;;
  *)
    echo "usage: $0 fetch | build OUT_DIR" >&2
    exit 2
    ;;
esac
