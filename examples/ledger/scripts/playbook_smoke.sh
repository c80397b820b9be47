#!/bin/bash
# End-to-end check of playbooks/ledger_deploy.yml and ledger_service.yml on this
# machine, without touching its real /srv, /etc/ledger, /var/lib/ledger, ...:
# the playbooks run with a local connection inside a private mount + PID
# namespace whose ledger directories are bind mounts of a scratch folder, as a
# lab host would see them.  The PID namespace guarantees every server started
# here dies when the script ends.  Needs root and util-linux unshare.
#
# usage: examples/ledger/scripts/playbook_smoke.sh [SCRATCH_DIR] [ADDRESS]
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../../.." && pwd)
T=${1:-/var/tmp/ledger-pbtest}
ADDR=${2:-127.0.0.66}
PORT=8080

if [ "${LEDGER_SMOKE_INSIDE:-}" != 1 ]; then
    rm -rf "$T" && mkdir -p "$T"/{srv,etc,lib,log,run}
    mkdir -p /srv /etc/ledger /var/lib/ledger /var/log/ledger /run/ledger
    python3 "$REPO/examples/ledger/build.py" >/dev/null
    exec unshare --mount --pid --fork --mount-proc \
        env LEDGER_SMOKE_INSIDE=1 "$0" "$T" "$ADDR"
fi

mount --make-rprivate /
mount --bind "$T/srv" /srv
mount --bind "$T/etc" /etc/ledger
mount --bind "$T/lib" /var/lib/ledger
mount --bind "$T/log" /var/log/ledger
mount --bind "$T/run" /run/ledger
cd "$REPO"

URL="http://$ADDR:$PORT"
PB_OPTS=(-i 'h1,' -c local -e target=h1 -e "ansible_host=$ADDR"
         -e ansible_python_interpreter=/usr/bin/python3)
export ANSIBLE_STDOUT_CALLBACK=default ANSIBLE_NOCOLOR=1 ANSIBLE_DEPRECATION_WARNINGS=0

step() { printf '\n===== %s\n' "$*"; }
fail() { echo "SMOKE FAILED: $*" >&2; exit 1; }
deploy() {
    "$REPO/.venv/bin/ansible-playbook" "${PB_OPTS[@]}" -e "ledger_version=$1" \
        "${@:2}" playbooks/ledger_deploy.yml >"$T/deploy-$1.out" 2>&1
}
recap() { grep -A1 'PLAY RECAP' "$1" | tail -1; }
get() { curl -sS -o /dev/null -w '%{http_code}' "$URL$1"; }
body() { curl -sS "$URL$1"; }
post() {
    curl -sS -X POST -H 'Content-Type: application/json' \
        -d "{\"account\":\"$1\",\"amount_cents\":$2}" "$URL/tx"
}
latency() {  # latency PATH: 20 sequential GETs, prints median and max (ms)
    python3 - "$URL$1" <<'PY'
import sys, time, urllib.request
times = []
for _ in range(20):
    t = time.perf_counter()
    urllib.request.urlopen(sys.argv[1], timeout=10).read()
    times.append((time.perf_counter() - t) * 1000)
times.sort()
print(f"median {times[10]:.1f} ms, max {times[-1]:.1f} ms over 20 GETs")
PY
}

step "deploy 1.0.0 (fresh host)"
deploy 1.0.0 || { cat "$T/deploy-1.0.0.out"; fail "deploy 1.0.0"; }
recap "$T/deploy-1.0.0.out"
body /version; echo
for i in 1 2 3; do post alice $((i * 100)); echo; done
post bob -250; echo
[ "$(get /accounts/alice/balance)" = 404 ] || fail "1.0.0 must not have /balance"

step "redeploy 1.0.0 (idempotent: changed=0)"
deploy 1.0.0 || fail "redeploy 1.0.0"
recap "$T/deploy-1.0.0.out"
grep -q 'changed=0' "$T/deploy-1.0.0.out" || fail "redeploy was not idempotent"

step "deploy 1.1.0 (balance feature)"
deploy 1.1.0 || { cat "$T/deploy-1.1.0.out"; fail "deploy 1.1.0"; }
recap "$T/deploy-1.1.0.out"
body /accounts/alice/balance; echo

step "deploy 1.2.0 (schema 1 -> 2 migration)"
deploy 1.2.0 || { cat "$T/deploy-1.2.0.out"; fail "deploy 1.2.0"; }
recap "$T/deploy-1.2.0.out"
grep -o 'schema 1 -> 2: [^"\\]*' "$T/deploy-1.2.0.out" | head -1
for id in 1 2 3 4; do body "/tx/$id"; echo; done
[ "$(body /tx/4 | python3 -c 'import json,sys; print(json.load(sys.stdin)["amount_cents"])')" = -250 ] \
    || fail "tx 4 lost its amount"
body /accounts/alice/balance; echo
echo "latency 1.2.0 GET /tx/2: $(latency /tx/2)"

step "deploy 2.0.0 (slow)"
deploy 2.0.0 || { cat "$T/deploy-2.0.0.out"; fail "deploy 2.0.0"; }
recap "$T/deploy-2.0.0.out"
body /version; echo; body /tx/2; echo
echo "latency 2.0.0 GET /tx/2: $(latency /tx/2)"

step "deploy 2.0.1 (broken GET /tx/<id>)"
deploy 2.0.1 || { cat "$T/deploy-2.0.1.out"; fail "deploy 2.0.1"; }
recap "$T/deploy-2.0.1.out"
body /health; echo
echo "GET /tx/2 -> HTTP $(get /tx/2)"
[ "$(get /tx/2)" = 500 ] || fail "2.0.1 GET /tx should be 500"

step "ledger_service.yml: stopped, then started"
"$REPO/.venv/bin/ansible-playbook" "${PB_OPTS[@]}" -e ledger_state=stopped \
    playbooks/ledger_service.yml >"$T/service.out" 2>&1 || { cat "$T/service.out"; fail "stop"; }
/srv/ledger/current/bin/ledgerctl status && fail "still running" || echo "status rc=$? (3 = stopped)"
"$REPO/.venv/bin/ansible-playbook" "${PB_OPTS[@]}" -e ledger_state=started \
    playbooks/ledger_service.yml >"$T/service.out" 2>&1 || { cat "$T/service.out"; fail "start"; }
/srv/ledger/current/bin/ledgerctl status

step "deploy 1.0.0 onto the schema-2 database: refused by the preflight"
if deploy 1.0.0; then fail "downgrade deploy must fail"; fi
grep -o 'ledger 1.0.0 expects schema 1 but[^"]*untouched.' "$T/deploy-1.0.0.out" | head -1
echo "still serving: $(body /version)"

step "same, with ledger_schema_preflight=false: the service refuses to start"
if deploy 1.0.0 -e ledger_schema_preflight=false; then fail "downgrade deploy must fail"; fi
grep -o 'refusing to start ledger 1.0.0[^"\\]*' "$T/deploy-1.0.0.out" | head -1
/srv/ledger/current/bin/ledgerctl status || echo "status rc=$?"
ls /var/lib/ledger

step "roll forward to 1.2.0 again: data intact"
deploy 1.2.0 || { cat "$T/deploy-1.2.0.out"; fail "deploy 1.2.0 again"; }
recap "$T/deploy-1.2.0.out"
body /tx/4; echo
cat /srv/ledger/revisions.log

step "missing artifact fails clearly"
if deploy 9.9.9; then fail "deploy of 9.9.9 must fail"; fi
grep -o 'Release artifact [^"]*' "$T/deploy-9.9.9.out" | head -1

/srv/ledger/current/bin/ledgerctl stop
echo; echo "SMOKE OK"
