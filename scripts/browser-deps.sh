#!/usr/bin/env bash
# What the browser tests need: Debian's Chromium and poppler-utils (apt), and playwright-core,
# axe-core and jsQR from the lockfile in tests/browser (npm ci, project-local node_modules).
# Idempotent; root or sudo.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }
if ! command -v chromium >/dev/null; then
  echo "[browser] installing chromium" >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-noto-core >&2
fi
if ! command -v pdftoppm >/dev/null; then
  # The dispatch document test turns printed PDFs into page images and text (poppler).
  echo "[browser] installing poppler-utils" >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends poppler-utils >&2
fi
if ! command -v node >/dev/null; then
  echo "[browser] installing nodejs" >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >&2
fi
cd "$ROOT/tests/browser"
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [[ ! -f node_modules/.lock-sha || $(cat node_modules/.lock-sha) != "$want" ]]; then
  echo "[browser] npm ci" >&2
  npm ci --no-audit --no-fund --loglevel=error >&2
  echo "$want" > node_modules/.lock-sha
fi
