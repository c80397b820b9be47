"""What the lab's ledger hosts hold on disk, to compare before and after a release."""

from __future__ import annotations

from tests.integration.ansible_cli import shell
from tests.integration.conftest import RunningLab
from tests.relctl_cli import relctl_json

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


def database_matches_snapshot(lab: RunningLab, release: str) -> dict[str, bool]:
    """For each touched host: is ledger.db byte-identical to its snapshot (sha256)?"""
    shown = relctl_json(lab.state_dir, "show", release)
    touched = {h["host"] for h in shown["hosts"] if h["state"] == "restored"}
    expected = {s["host"]: s["sha256"] for s in shown["snapshots"] if s["item"] == "ledger-db"}
    return {host: shell(lab.ansible_cfg, host, "sha256sum /var/lib/ledger/ledger.db").split()[0]
            == expected[host] for host in sorted(touched)}
