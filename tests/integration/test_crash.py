"""kill -9 of the controller alone, in every phase of a release, then `relctl resume`.

The controller process is killed by itself (not its process group), as when it is OOM
killed: its children must not outlive it doing work (they die with it through the
launcher's parent-death signal), and `resume` must stop any that did, by their recorded
pids. After `resume` every host runs one version, the restored files are byte-identical
to what they were, the database to its snapshot, and the lock is free. With
`resume --forward` the release goes on from the first batch not verified instead.

A lab of its own (2 primaries at 127.0.9.70): canary primary-1, then batch primary-2.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.adapters.children import ChildPid, alive_of, read_record
from controller.journal import Journal
from tests.integration.conftest import RunningLab, ledger_lab
from tests.integration.ledger_http import served_versions
from tests.integration.ledger_state import database_kept, fingerprints
from tests.relctl_cli import RELCTL, ROOT, deploy_ledger, example_text, relctl

pytestmark = pytest.mark.lab
RELEASES = ROOT / "examples" / "releases"
# Each phase, and the child relctl runs in it (its journal label ends with this).
PHASE_CHILD = {
    "baseline": "locust:baseline",
    "snapshot": "-snapshot",
    "apply:canary": "-canary",
    "gate:testinfra:canary": "testinfra:canary-testinfra-0",
    "apply:batch2": "-batch2",
    "gate:locust": "locust:candidate",
    "rollback": "-restore",
}
# How long the child works before the kill: the lean snapshot and restore, and the canary's
# testinfra gate on one host, end within a second.
SETTLE_S = {"snapshot": 0.0, "rollback": 0.0, "gate:testinfra:canary": 0.0}
FORWARD_PHASES = ["apply:canary", "gate:testinfra:canary", "apply:batch2", "gate:locust"]
LOAD_PHASES = ("baseline", "gate:locust", "rollback")  # the others run without a load gate


@pytest.fixture(scope="module")
def crash_lab() -> Iterator[RunningLab]:
    with ledger_lab(primary=2, backup=0, base_address="127.0.9.70") as up:
        yield up


def manifest_for(case: str, phase: str, folder: Path) -> Path:
    """ledger 1.1.0 under its own release name, one host per batch, and a short load gate
    only where ``phase`` needs one; for ``rollback`` the load gate asks for a rate no lab
    reaches, so the release rolls back. Written to ``folder``, named after the release."""
    failing = phase == "rollback"
    data: dict[str, Any] = yaml.safe_load(example_text(RELEASES / "ledger-1.1.0.yml"))
    data["release"] = f"crash-{case.replace(':', '-')}"
    data["strategy"] = {"canary": 1, "batch_size": 1, "max_fail_percentage": 0}
    if phase not in LOAD_PHASES:
        del data["gates"]["locust"]
        return _write(data, folder)
    data["gates"]["locust"].update(duration_s=4, thresholds={
        "p95_ms": 3000, "max_failure_ratio": 0.05, "min_rps": 1_000_000 if failing else 1,
        "min_requests": 5})
    return _write(data, folder)


def _write(data: dict[str, Any], folder: Path) -> Path:
    path = folder / f"{data['release']}.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def kill_in(lab: RunningLab, manifest: Path, phase: str) -> int:
    """Start `relctl apply`, SIGKILL the controller process alone once ``phase`` runs and
    its child is at work; returns the release id."""
    journal = lab.state_dir / "journal.sqlite"
    command = [*RELCTL, "--state-dir", str(lab.state_dir), "apply", str(manifest), "--yes",
               "--json"]
    controller = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  text=True, start_new_session=True)
    try:
        release_id = _wait_for_child(journal, phase, PHASE_CHILD[phase], controller)
        time.sleep(SETTLE_S.get(phase, 1.0))  # the child is doing its work now
    finally:
        if controller.poll() is None:
            os.kill(controller.pid, signal.SIGKILL)
        controller.communicate()
    return release_id


def _wait_for_child(journal: Path, phase: str, label_end: str,
                    controller: subprocess.Popen[str], timeout: float = 600) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if controller.poll() is not None:
            _out, err = controller.communicate()
            raise AssertionError(f"apply ended (exit {controller.returncode}) before {phase} "
                                 f"ran its child:\n{err[-3000:]}")
        try:
            with sqlite3.connect(f"{journal.as_uri()}?mode=ro", uri=True, timeout=10) as db:
                row = db.execute(
                    "SELECT r.id, c.record FROM releases r JOIN phases p ON p.release_id = r.id"
                    " JOIN children c ON c.release_id = r.id"
                    " WHERE r.id = (SELECT max(id) FROM releases) AND p.name = ?"
                    " AND p.state = 'running' AND c.label LIKE ? AND c.created >= p.started",
                    (phase, f"%{label_end}")).fetchone()
        except sqlite3.OperationalError:  # not created, or not migrated, yet
            row = None
        if row is not None and row[1] and read_record(Path(row[1])):  # the child started
            return int(row[0])
        time.sleep(0.02)
    raise AssertionError(f"the release never reached {phase} with its child running")


def recorded_pids(lab: RunningLab, release_id: int) -> list[ChildPid]:
    """Every child of the release, by the pid and create time relctl recorded."""
    with Journal(lab.state_dir / "journal.sqlite") as journal:
        children = journal.children(release_id)
    pids = [ChildPid(c.pid, c.started) if c.pid is not None and c.started is not None
            else read_record(c.record) for c in children]
    return [p for p in pids if p is not None]


def assert_nothing_left(lab: RunningLab, release_id: int) -> None:
    pids = recorded_pids(lab, release_id)
    assert pids, "no child was recorded"
    assert [alive_of(p) for p in pids if alive_of(p)] == []
    with Journal(lab.state_dir / "journal.sqlite") as journal:
        assert journal.unfinished_releases() == []
        assert journal.lock_status("lab") is None


@pytest.mark.parametrize("phase", list(PHASE_CHILD))
def test_kill_in_phase_then_resume_rolls_back(crash_lab: RunningLab, phase: str,
                                              tmp_path: Path) -> None:
    lab = crash_lab
    before = fingerprints(lab)
    manifest = manifest_for(phase, phase, tmp_path)
    release_id = kill_in(lab, manifest, phase)
    if phase in ("baseline", "snapshot"):
        refused = relctl(lab.state_dir, "resume", "--forward")
        assert refused.returncode == 2, refused.stderr
        assert "snapshot is incomplete" in refused.stderr
    resumed = relctl(lab.state_dir, "resume", "--json")
    assert resumed.returncode == 3, resumed.stderr
    assert f"stopped in phase {phase}" in resumed.stderr
    outcome = json.loads(resumed.stdout)  # every phase with the duration it took
    assert outcome["phases"] and all(p["seconds"] is not None for p in outcome["phases"])
    with Journal(lab.state_dir / "journal.sqlite") as journal:  # what restored hosts run now
        assert {h.version_after for h in journal.host_states(release_id)
                if h.state == "restored"} <= {"1.0.0"}
    assert served_versions(lab) == {"1.0.0"}
    assert fingerprints(lab) == before  # code, config and the current link, by sha256
    assert all(database_kept(lab, manifest.stem).values())
    assert_nothing_left(lab, release_id)


@pytest.mark.parametrize("phase", FORWARD_PHASES)
def test_kill_in_phase_then_resume_forward_releases(crash_lab: RunningLab, phase: str,
                                                    tmp_path: Path) -> None:
    lab = crash_lab
    manifest = manifest_for(f"forward-{phase}", phase, tmp_path)
    release_id = kill_in(lab, manifest, phase)
    resumed = relctl(lab.state_dir, "resume", "--forward", "--json")
    try:
        assert resumed.returncode == 0, resumed.stderr
        assert served_versions(lab) == {"1.1.0"}
        with Journal(lab.state_dir / "journal.sqlite") as journal:
            hosts = {h.host: h.state for h in journal.host_states(release_id)}
            checks = [p for p in journal.phases(release_id)
                      if p.name.startswith("gate:testinfra:")]
        assert hosts == {"primary-1": "verified", "primary-2": "verified"}
        assert checks and checks[-1].state == "ok"
        assert_nothing_left(lab, release_id)
    finally:
        deployed = deploy_ledger(lab.state_dir, "1.0.0")  # the next case starts from 1.0.0
        assert deployed.returncode == 0, deployed.stderr
