#!/usr/bin/env bash
# The main job end to end on the built-in staging lab. Called by `make demo`.
set -euo pipefail
source "$(dirname "$0")/demo_lib.sh"

step "1. Bring up the staging lab: HAProxy + 3 primary hosts + 2 backup hosts"
relctl lab down >/dev/null 2>&1 || true   # a clean start: the demo is a fresh release train
rm -rf "$DEMO_DIR"
relctl lab up --primary 3 --backup 2 --service ledger:8080/health
url=$(relctl lab status --json | "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["url"])')

step "2. Deploy ledger 1.0.0 to the primary site (plain ansible-playbook: playbooks/ledger_deploy.yml)"
deploy() { VENV=$VENV examples/ledger/deploy.sh --state-dir "$DEMO_DIR" "$@" | tail -n 4; }
deploy --limit app_primary 1.0.0

step "3. Ask the service through the load balancer at $url"
for _ in 1 2 3; do http GET "$url/version"; done
http POST "$url/tx" '{"account": "alice", "amount_cents": 1250}'
http GET "$url/tx/1"

step "3b. Replicate to the backup site: the continuity plan covers ledger's releases, so from now on the backup site follows each one"
relctl replicate --plan examples/continuity/ledger-lab.yml

step "4. Plan 1.1.0 (runbook, rollback plan, risks), then release it: snapshot, canary, batches, gates"
relctl plan examples/releases/ledger-1.1.0.yml -o "$DEMO_DIR/plan-ledger-1.1.0.md"
sed -n '/^## 3. Cut-over runbook/,/^## 4/p' "$DEMO_DIR/plan-ledger-1.1.0.md" | head -n -1
relctl apply examples/releases/ledger-1.1.0.yml --yes
http GET "$url/accounts/alice/balance"

step "5. Release 1.2.0: a schema change with data conversion (a point of no return)"
relctl apply examples/releases/ledger-1.2.0.yml --yes
http GET "$url/tx/1"

step "6. Try 2.0.0: functionally fine but slow -> the Locust gate fails -> rolled back (exit 3)"
set +e; relctl apply examples/releases/ledger-2.0.0.yml --yes; code=$?; set -e
echo "exit code: $code"; [ "$code" = 3 ]
http GET "$url/version"

step "7. Try 2.0.1: broken -> testinfra fails on the canary -> rolled back (exit 3)"
set +e; relctl apply examples/releases/ledger-2.0.1.yml --yes; code=$?; set -e
echo "exit code: $code"; [ "$code" = 3 ]
http GET "$url/version"
http GET "$url/tx/1"

step "8. History, from the journal"
relctl history

step "9. DR drill: the whole primary site is lost under load; relctl fails over to the backup site (already on 1.2.0: it followed the release)"
set +e; relctl drill site-loss --plan examples/continuity/ledger-lab.yml; code=$?; set -e
echo "drill exit code: $code (0 targets met, 10 a target missed)"; [ "$code" = 0 ] || [ "$code" = 10 ]
http GET "$url/tx/1"
relctl lab status

if [ "$KEEP_LAB" = 1 ]; then
  step "Lab left running. Inventory: $DEMO_DIR/lab/inventory.yml   Stop it: make clean"
else
  step "10. Tear the lab down (make demo KEEP_LAB=1 keeps it)"
  relctl lab down
fi
