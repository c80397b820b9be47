"""Lean snapshots on the real lab: after 5 releases a rollback restores every item
byte-exactly (sha256) whatever happened to the host's copy, and retention keeps every
snapshot a release can still be rolled back to.

Releases: 1.0.0 (plain deploy), then relctl 1.1.0, 1.2.0, 2.0.0, 2.0.1 (broken: rolled back
from its failed gate) and 2.0.0 again; rollbacks with the host copy intact, deleted,
corrupted, and with the old release directory removed. ``snapshots.keep: 1``.
"""

from __future__ import annotations

import json
import shlex
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.ansible_cli import shell
from tests.integration.conftest import RunningLab, start_lab, stop_lab
from tests.relctl_cli import ROOT, deploy_ledger, relctl, relctl_json

HOST_COPY = "/var/lib/relctl/snapshots/ledger.lab"
PRIMARIES = ("primary-1", "primary-2")
FINGERPRINT = r'''
import hashlib, json, os, sqlite3
def sha(p):
    return hashlib.sha256(open(p, "rb").read()).hexdigest()
out = {"conf": sha("/etc/ledger/ledger.conf"),
       "conf_mode": os.stat("/etc/ledger/ledger.conf").st_mode,
       "current": os.readlink("/srv/ledger/current")}
rel = os.path.realpath("/srv/ledger/current")
for folder, dirs, files in os.walk(rel):
    for name in files:
        p = os.path.join(folder, name)
        if "__pycache__" not in p:
            out["code:" + os.path.relpath(p, rel)] = [sha(p), os.stat(p).st_mode]
db = sqlite3.connect("file:/var/lib/ledger/ledger.db?mode=ro", uri=True)
out["db"] = hashlib.sha256("\n".join(db.iterdump()).encode()).hexdigest()
print(json.dumps(out))
'''


@pytest.fixture(scope="module")
def lab() -> Iterator[RunningLab]:
    """Two primary hosts at 127.0.60.30."""
    running = start_lab(primary=2, backup=0, base_address="127.0.60.30")
    try:
        yield running
    finally:
        stop_lab(running)


def manifest(lab: RunningLab, version: str) -> Path:
    """The example manifest: both hosts in one batch, no load gate (this module is about
    snapshots), keep 1 release; testinfra only where it must fail (2.0.1)."""
    text = (ROOT / "examples" / "releases" / f"ledger-{version}.yml").read_text()
    text = text.replace("  canary: 1\n", "  canary: 2\n").replace("../../", f"{ROOT}/")
    head, tail = text.split("gates:", 1)
    gates = tail.split("  locust:")[0] if version == "2.0.1" else "\n  testinfra: []\n"
    text = head + "snapshots: {keep: 1}\ngates:" + gates + "owners:" + tail.split("owners:")[1]
    path = lab.state_dir / f"ledger-{version}.yml"
    path.write_text(text)
    return path


def on_host(lab: RunningLab, host: str, command: str) -> str:
    """The stdout of a shell ``command`` on one primary (over the lab's ssh)."""
    return shell(lab.ansible_cfg, host, command)


def fingerprints(lab: RunningLab) -> dict[str, dict[str, Any]]:
    """Every item's bytes on every host, as sha256 (the database by its logical dump)."""
    return {host: json.loads(on_host(lab, host, f"python3 -c {shlex.quote(FINGERPRINT)}"))
            for host in PRIMARIES}


def apply(lab: RunningLab, version: str, *extra: str) -> dict[str, Any]:
    result = relctl(lab.state_dir, "apply", str(manifest(lab, version)), "--yes", "--json",
                    *extra)
    assert result.returncode in (0, 3), result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def rollback_phase(lab: RunningLab, release: str) -> dict[str, Any]:
    shown = relctl_json(lab.state_dir, "show", release)
    return [p for p in shown["phases"] if p["name"] == "rollback"][-1]["detail"]  # type: ignore[no-any-return]


def pruned(lab: RunningLab, release_id: int) -> bool:
    with sqlite3.connect(lab.state_dir / "journal.sqlite") as db:
        rows = db.execute("SELECT pruned FROM snapshots WHERE release_id = ?",
                          (release_id,)).fetchall()
    assert rows, f"release {release_id} has no snapshot rows"
    return all(r[0] for r in rows)


def test_rollbacks_after_five_releases_restore_every_item_byte_exactly(lab: RunningLab) -> None:
    assert deploy_ledger(lab.state_dir, "1.0.0").returncode == 0
    ids = {v: apply(lab, v)["release_id"] for v in ("1.1.0", "1.2.0")}
    at_1_2_0 = fingerprints(lab)
    ids["2.0.0"] = apply(lab, "2.0.0")["release_id"]
    at_2_0_0 = fingerprints(lab)
    assert at_2_0_0 != at_1_2_0

    # 1. the failed gate of 2.0.1: host copies intact, the old release still on disk
    failed = apply(lab, "2.0.1")
    assert failed["state"] == "rolled_back"
    assert fingerprints(lab) == at_2_0_0
    detail = rollback_phase(lab, "ledger-2.0.1")
    assert all(how["ledger-code"] == "switched" for how in detail["restored"].values())
    assert detail["uploaded_objects"] == {}

    # retention (keep 1): 1.1.0 and 1.2.0 superseded and dropped; 2.0.0 (still the
    # release a rollback returns from) kept, as the next step proves by restoring it
    assert pruned(lab, ids["1.1.0"]) and pruned(lab, ids["1.2.0"])
    assert not pruned(lab, ids["2.0.0"])

    # 2. rollback of 2.0.0 to 1.2.0's state: one host's copy deleted, the other's corrupted
    on_host(lab, "primary-1", f"rm -rf {HOST_COPY}")
    on_host(lab, "primary-2", f"for f in {HOST_COPY}/objects/*; do echo corrupted > $f; done")
    result = relctl(lab.state_dir, "rollback", "ledger-2.0.0", "--json")
    assert result.returncode == 3, result.stderr
    assert fingerprints(lab) == at_1_2_0
    assert all(n > 0 for n in rollback_phase(lab, "ledger-2.0.0")["uploaded_objects"].values())

    # 3. 2.0.0 again, then its rollback with the old release directory removed from the hosts
    assert apply(lab, "2.0.0", "--force")["state"] == "released"
    for host in PRIMARIES:
        on_host(lab, host, "rm -rf /srv/ledger/releases/1.2.0")
    result = relctl(lab.state_dir, "rollback", "ledger-2.0.0", "--json")
    assert result.returncode == 3, result.stderr
    assert fingerprints(lab) == at_1_2_0
    detail = rollback_phase(lab, "ledger-2.0.0")
    assert all(how["ledger-code"] == "unpacked" for how in detail["restored"].values())
