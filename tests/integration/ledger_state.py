"""What the lab's ledger hosts hold on disk, to compare before and after a release."""

from __future__ import annotations

from tests.integration.ansible_cli import shell
from tests.integration.conftest import RunningLab
from tests.relctl_cli import relctl_json

LEDGERCTL = "/srv/ledger/current/bin/ledgerctl"
STOP_LEDGER = f"{LEDGERCTL} stop --config /etc/ledger/ledger.conf"
FINGERPRINT = (  # the items relctl snapshots: the current link, the release it names, config
    "cd /srv/ledger && cur=$(readlink current); echo \"$cur\"; "
    "find \"$cur/\" /etc/ledger \\( -type f -o -type l \\) -printf '%p %m %u %l\\n' | sort; "
    "find \"$cur/\" /etc/ledger -type f | sort | xargs sha256sum"
)


def fingerprints(lab: RunningLab) -> dict[str, str]:
    """The ledger's artifact item (the ``current`` link and every file and symlink of the
    release it names) and its config, by sha256, on every primary host. Other release
    directories are not part of the item: like ansistrano, a rollback leaves them."""
    return {h["name"]: shell(lab.ansible_cfg, h["name"], FINGERPRINT)
            for h in lab.hosts("app_primary")}


def database_kept(lab: RunningLab, release: str) -> dict[str, bool]:
    """For each touched host: did the rollback keep every write in ledger.db? Its data
    report says the database was left as it was (nothing written since), kept live (no
    migration ran), or restored with every later row carried into it, none left behind."""
    shown = relctl_json(lab.state_dir, "show", release)
    touched = {h["host"] for h in shown["hosts"] if h["state"] == "restored"}
    data = next((p["detail"].get("data") or {} for p in reversed(shown["phases"])
                 if p["name"] == "rollback" and p["state"] == "ok"), {})
    return {host: (report := data.get(host, {}).get("ledger-db", {})).get("decision") in
            ("unchanged", "kept", "carried") and report.get("not_carried", 0) == 0
            for host in sorted(touched)}
