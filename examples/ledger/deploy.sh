#!/usr/bin/env bash
# Deploy the sample service ledger to lab hosts with plain ansible-playbook: no snapshot,
# no gates (releases with snapshots, gates and rollback go through `relctl apply`).
# Builds the release tarball first when it is missing.
#
#   examples/ledger/deploy.sh [--state-dir DIR] [--limit GROUP] [-e VAR=VALUE]... VERSION
#
# DIR is relctl's state directory (default $RELCTL_STATE_DIR, else ~/.local/state/relctl);
# the lab's generated ansible.cfg and inventory in DIR/lab are used. GROUP defaults to
# app_primary; each -e is passed to ansible-playbook (e.g. -e ledger_database=postgresql://...
# -e ledger_db_passfile=FILE: the PostgreSQL mode). ansible-playbook and python are taken
# from $VENV/bin when VENV is set.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
state_dir=${RELCTL_STATE_DIR:-$HOME/.local/state/relctl}
limit=app_primary
extra=()
while (($#)); do
  case $1 in
    -e) extra+=(-e "$2"); shift 2 ;;
    --state-dir) state_dir=$2; shift 2 ;;
    --limit) limit=$2; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    -*) echo "deploy.sh: unknown option $1" >&2; exit 2 ;;
    *) version=$1; shift ;;
  esac
done
: "${version:?usage: deploy.sh [--state-dir DIR] [--limit GROUP] VERSION}"
bin=${VENV:+$VENV/bin/}
cfg=$state_dir/lab/ansible.cfg
[ -f "$cfg" ] || { echo "deploy.sh: no lab in $state_dir (run: relctl lab up)" >&2; exit 7; }
artifacts=$repo/build/artifacts
[ -f "$artifacts/ledger-$version.tar.gz" ] ||
  "${bin}python3" "$here/build.py" --out "$artifacts" --version "$version" >/dev/null
ANSIBLE_CONFIG=$cfg "${bin}ansible-playbook" "$repo/playbooks/ledger_deploy.yml" \
  --limit "$limit" -e "ledger_version=$version" -e "ledger_artifacts_dir=$artifacts" "${extra[@]}"
