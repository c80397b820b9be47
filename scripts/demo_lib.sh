#!/usr/bin/env bash
# What both demos share (sourced by scripts/demo.sh and scripts/demo_postgresql.sh).
: "${DEMO_DIR:=/var/tmp/relctl-demo}" "${VENV:=.venv}" "${KEEP_LAB:=0}"
relctl() { "$VENV/bin/relctl" --state-dir "$DEMO_DIR" "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
http() { "$VENV/bin/python" - "$@" <<'PY'
import json, sys, urllib.request
method, url, *body = sys.argv[1:]
data = body[0].encode() if body else None
req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
with urllib.request.urlopen(req, timeout=5) as resp:
    print(resp.status, resp.read().decode().strip())
PY
}
