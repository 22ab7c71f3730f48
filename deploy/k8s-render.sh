#!/usr/bin/env bash
# `make k8s-render`: render every kustomize overlay with `kubectl kustomize` into .local/k8s/<overlay>.yaml
# and check the renders, the compose file and the Dockerfile offline (deploy/check_render.py).
# Installs what it needs on a fresh Debian/Ubuntu (python3 and python3-venv with apt, the pinned tools
# of deploy/requirements.txt with pip into .local/deploy-venv); idempotent, re-installs only when the
# requirements change.
#
# Knobs (environment): TT_DEPLOY_VENV (default .local/deploy-venv), TT_K8S_OUT (default .local/k8s).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
VENV=${TT_DEPLOY_VENV:-$ROOT/.local/deploy-venv}
OUT=${TT_K8S_OUT:-$ROOT/.local/k8s}
REQ=$ROOT/deploy/requirements.txt
STAMP=$VENV/.requirements.sha

say() { echo "[k8s-render] $*" >&2; }
as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

if ! command -v python3 >/dev/null || ! python3 -m venv --help >/dev/null 2>&1 \
   || ! python3 -c 'import ensurepip' 2>/dev/null; then
  say "installing python3 and python3-venv (apt)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >&2
fi

want=$(sha256sum "$REQ" | cut -d' ' -f1)
if [[ ! -x $VENV/bin/python || ! -x $VENV/bin/kubectl || ! -f $STAMP || $(cat "$STAMP") != "$want" ]]; then
  say "creating $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQ" >&2
  echo "$want" > "$STAMP"
fi
KUBECTL=$VENV/bin/kubectl
say "$("$KUBECTL" version --client 2>/dev/null | tr '\n' ' ')"

mkdir -p "$OUT"
rm -f "$OUT"/*.yaml
for dir in deploy/k8s/overlays/*/; do
  overlay=$(basename "$dir")
  "$KUBECTL" kustomize "$dir" > "$OUT/$overlay.yaml"
  say "rendered $overlay: $(grep -c '^kind:' "$OUT/$overlay.yaml") objects -> ${OUT#"$ROOT"/}/$overlay.yaml"
done

"$VENV/bin/python" deploy/check_render.py "$OUT"
