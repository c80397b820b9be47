#!/usr/bin/env bash
# The main job end to end on the built-in lab, ledger in its PostgreSQL mode: every primary
# shares one database (primary-1's cluster), which relctl snapshots from the controller
# and restores on a rollback. Called by `make demo DB=postgresql`.
set -euo pipefail
source "$(dirname "$0")/demo_lib.sh"
sql() {  # one statement on primary-1's cluster, as the lab's postgres role
  "$VENV/bin/python" - "$@" <<'PY'
import os, sys, psycopg
with psycopg.connect(host="127.0.0.11", port=5432, user="postgres", dbname=sys.argv[2],
                     password=os.environ["RELCTL_LAB_PG_PASSWORD"], autocommit=True) as conn:
    cursor = conn.execute(sys.argv[1])
    for row in (cursor.fetchall() if cursor.description else []):
        print(*row)
PY
}

step "1. Bring up the lab: HAProxy + 3 primary hosts, each with its own PostgreSQL cluster"
relctl lab down >/dev/null 2>&1 || true   # a clean start: the demo is a fresh release train
rm -rf "$DEMO_DIR"
relctl lab up --primary 3 --backup 0 --postgresql --service ledger:8080/health
url=$(relctl lab status --json | "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["url"])')
RELCTL_LAB_PG_PASSWORD=$(cat "$DEMO_DIR/lab/keys/postgresql.password")
export RELCTL_LAB_PG_PASSWORD   # the manifests' password_env, and the deploy playbook's
sql "CREATE DATABASE ledger" postgres

step "2. Deploy ledger 1.0.0 on the primaries, sharing the database ledger on primary-1"
VENV=$VENV examples/ledger/deploy.sh --state-dir "$DEMO_DIR" --limit app_primary \
  -e ledger_database=postgresql://postgres@127.0.0.11:5432/ledger \
  -e ledger_db_password_env=RELCTL_LAB_PG_PASSWORD 1.0.0 | tail -n 4
http POST "$url/tx" '{"account": "alice", "amount_cents": 1250}'
http GET "$url/tx/1"

step "3. Release 1.1.0: snapshot (the hosts, and the database once: pg_dump), canary, batches, gates"
relctl apply examples/releases/postgresql/ledger-1.1.0.yml --yes

step "4. Release 1.2.0: the canary converts the shared database to schema 2"
relctl apply examples/releases/postgresql/ledger-1.2.0.yml --yes
sql "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1" ledger

step "5. Try 2.0.0: slow -> the Locust gate fails -> services stopped, database and hosts restored (exit 3)"
set +e; relctl apply examples/releases/postgresql/ledger-2.0.0.yml --yes; code=$?; set -e
echo "exit code: $code"; [ "$code" = 3 ]
http GET "$url/version"
http GET "$url/tx/1"
relctl show ledger-2.0.0-pg --json | "$VENV/bin/python" -c '
import json, sys
for s in json.load(sys.stdin)["snapshots"]:
    if s["item"] == "ledger-db":
        print("database snapshot:", s["host"], s["bytes"], "bytes, sha256", s["sha256"][:16])'

step "6. History, from the journal"
relctl history

if [ "$KEEP_LAB" = 1 ]; then
  step "Lab left running. Inventory: $DEMO_DIR/lab/inventory.yml   Stop it: make clean"
else
  step "7. Tear the lab down (make demo DB=postgresql KEEP_LAB=1 keeps it)"
  relctl lab down
fi
