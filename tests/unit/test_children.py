"""relctl's children: the launcher, the journal's record of them, and resume's reading
of where a release stopped. Real processes (sleep, sh), no lab."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from controller.adapters.children import ChildPid, alive_of, read_record, stop_recorded
from controller.engine.children import JournalChildren, orphan_connections, stop_orphans
from controller.engine.resumption import close_stale_phases, forward_refusal, where_stopped
from controller.journal import Holder, Journal
from controller.manifest_loader import load_manifest
from controller.planning.release import plan_release
from tests.unit.example_tree import example_tree

# A controller in miniature: starts `sh` under the launcher through relctl's own code,
# the shell starts a sleeper in a session of its own (as Ansible's workers do), and the
# controller then waits forever, to be killed by the test.
CONTROLLER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from controller.adapters.children import owned_child, start_owned

    class Recorder:
        def before(self, label, program):
            return 1, Path(sys.argv[1])
        def running(self, child_id, pid):
            print("running", pid.pid, flush=True)
        def after(self, child_id, code):
            pass

    with owned_child(Recorder(), "test", "sh") as child:
        start_owned(child, ["sh", "-c", "setsid sleep 300 & sleep 300"], env={})
        time.sleep(300)
""")


def _wait(predicate: object, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def controller(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    record = tmp_path / "child.json"
    proc = subprocess.Popen([sys.executable, "-c", CONTROLLER, str(record)],
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert _wait(lambda: read_record(record) is not None)
    pid = read_record(record)
    assert pid is not None
    assert _wait(lambda: len(alive_of(pid)) >= 4)  # launcher, sh, two sleepers
    yield proc, record
    for left in alive_of(pid):  # whatever a failed test left: by the recorded pids only
        os.kill(left, signal.SIGKILL)
    proc.kill()
    proc.wait()


def test_children_die_with_a_controller_killed_alone(
        controller: tuple[subprocess.Popen[str], Path]) -> None:
    proc, record = controller
    pid = read_record(record)
    assert pid is not None
    data = json.loads(record.read_text())
    assert data["program"] == "sh" and data["pid"] == pid.pid
    launched = alive_of(pid)
    detached = [p for p in launched if os.getsid(p) != pid.pid]
    assert detached, "the setsid sleeper left the launcher's session"
    os.kill(proc.pid, signal.SIGKILL)  # the controller alone, not its group
    proc.wait()
    assert _wait(lambda: not alive_of(pid)), f"left running: {alive_of(pid)}"
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"
                   for p in launched)


def test_stop_recorded_stops_an_orphaned_child_by_its_mark(
        controller: tuple[subprocess.Popen[str], Path]) -> None:
    _proc, record = controller
    pid = read_record(record)
    assert pid is not None
    os.kill(pid.pid, signal.SIGKILL)  # the launcher dies without stopping anything
    assert _wait(lambda: not psutil.pid_exists(pid.pid)
                 or psutil.Process(pid.pid).status() == "zombie")
    time.sleep(0.3)
    left = alive_of(pid)
    assert left, "the setsid sleeper survives its launcher's SIGKILL"
    stopped = stop_recorded(pid)
    assert set(left) <= set(stopped)
    assert _wait(lambda: not alive_of(pid))


def test_a_reused_pid_is_never_stopped() -> None:
    me = psutil.Process()
    assert stop_recorded(ChildPid(me.pid, me.create_time() - 1000)) == []
    assert stop_recorded(None) == []


def _launched(children: Path, proc: subprocess.Popen[bytes]) -> Path:
    """A launcher's record of ``proc`` in ``children``, as the launcher writes it."""
    children.mkdir(exist_ok=True)
    record = children / f"{uuid.uuid4().hex}.json"
    record.write_text(json.dumps({"pid": proc.pid,
                                  "started": psutil.Process(proc.pid).create_time()}))
    return record


def test_resume_stops_only_children_of_a_dead_controller(tmp_path: Path) -> None:
    sleeper = subprocess.Popen(["sleep", "300"], start_new_session=True)
    children = tmp_path / "children"
    try:
        started = psutil.Process(sleeper.pid).create_time()
        with Journal(tmp_path / "journal.db") as journal:
            me = psutil.Process()
            alive = Holder("ops", os.uname().nodename, me.pid, me.create_time())
            dead = Holder("ops", os.uname().nodename, 999_999, 1.0)
            for owner in (alive, dead):
                child_id = journal.add_child(None, "apply:canary", "ansible-playbook",
                                             _launched(children, sleeper), owner)
                journal.child_running(child_id, sleeper.pid, started)
            lines = stop_orphans(journal, children, owner=alive)
            assert "still runs; left alone" in lines[0] and sleeper.poll() is None
            lines = stop_orphans(journal, children, owner=dead)
            assert lines == [f"stopped ansible-playbook (apply:canary) left by the dead "
                             f"controller: pids {sleeper.pid}"]
            assert sleeper.wait(10) == -signal.SIGTERM
            assert [c.state for c in journal.open_children()] == ["running"]  # the live one's
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_journal_row_alone_never_names_what_is_stopped(tmp_path: Path) -> None:
    """A shared journal (PostgreSQL) is written by others: rows naming a process this
    controller's launchers did not record (its pid, its process group from the dawn of
    time, a record file elsewhere or a link to one) stop nothing."""
    victim = subprocess.Popen(["sleep", "300"], start_new_session=True)  # leads group
    children = tmp_path / "children"
    elsewhere = tmp_path / "elsewhere"
    try:
        started = psutil.Process(victim.pid).create_time()
        outside = _launched(elsewhere, victim)
        link = children / f"{uuid.uuid4().hex}.json"
        children.mkdir()
        link.symlink_to(outside)
        mine = _launched(children, victim)
        forged = [(outside, victim.pid, started),          # a record outside the folder
                  (children / "../elsewhere" / outside.name, victim.pid, started),
                  (link, victim.pid, started),             # a link in the folder
                  (mine, victim.pid, 0.0),                 # its group, since 1970
                  (children / f"{uuid.uuid4().hex}.json", victim.pid, started)]  # none
        # What a launcher stopped by a signal leaves: connections whose remote processes
        # a resume stops on the hosts. Beside a record that is not ours, never read.
        (elsewhere / f"{outside.stem}.connections.json").write_text(json.dumps(
            {"connections": ["127.0.0.1 40000 127.0.0.9 22"], "at": time.time(),
             "age_s": 5}))
        with Journal(tmp_path / "journal.db") as journal:
            dead = Holder("ops", os.uname().nodename, 999_999, 1.0)
            release = journal.start_release(
                name="svc-1.0", version="1.0", service="svc", environment="lab",
                manifest_path=tmp_path / "m.yml", manifest_sha256="ab" * 32, operator=dead)
            for record, pid, since in forged:
                child_id = journal.add_child(release, "gate", "pytest", record, dead)
                journal.child_running(child_id, pid, since)
            lines = stop_orphans(journal, children, owner=dead)
            assert victim.poll() is None, lines
            assert sum("left alone" in line for line in lines) == 4, lines
            assert not any(line.startswith("stopped") for line in lines), lines
            assert orphan_connections(journal, release, children).connections == []
            assert orphan_connections(journal, release, elsewhere).connections == [
                "127.0.0.1 40000 127.0.0.9 22"]  # what the check keeps out
    finally:
        victim.kill()
        victim.wait()


def test_recorder_journals_a_child_before_it_starts(tmp_path: Path) -> None:
    with Journal(tmp_path / "journal.db") as journal:
        recorder = JournalChildren(journal, None, tmp_path / "children")
        child_id, record = recorder.before("gate", "pytest")
        [child] = journal.open_children()
        assert (child.id, child.state, child.pid, child.record) == (child_id, "starting", None,
                                                                      record)
        recorder.running(child_id, ChildPid(123, 4.5))
        recorder.after(child_id, 0)
        assert journal.open_children() == []
        assert journal.children(0) == []


# -- where a release stopped, and whether it may go forward -----------------------------

@pytest.fixture
def stopped(tmp_path: Path) -> Iterator[tuple[Journal, int, object]]:
    tree = example_tree(tmp_path / "tree")
    manifest = load_manifest(tree / "examples" / "releases" / "ledger-1.1.0.yml")
    plan = plan_release(manifest, ["p1", "p2", "p3"])  # canary p1, then p2+p3
    with Journal(tmp_path / "journal.db") as journal:
        release_id = journal.start_release(
            name=manifest.release, version=manifest.version, service=manifest.service,
            environment=manifest.environment, manifest_path=manifest.source_path or Path(),
            manifest_sha256=manifest.source_sha256 or "", operator=Holder("o", "h", 1, 1.0))
        baseline = journal.begin_phase(release_id, "baseline")
        journal.end_phase(baseline, "ok", {"figures": {
            "requests": 100, "failures": 0, "p50_ms": 5, "p95_ms": 9, "p99_ms": 12,
            "rps": 20}})
        yield journal, release_id, (manifest, plan)


def _snapshot(journal: Journal, release_id: int, hosts: list[str], items: list[str]) -> None:
    phase = journal.begin_phase(release_id, "snapshot")
    for host in hosts:
        for item in items:
            journal.add_snapshot(release_id, host=host, item=item, kind="file",
                                 path=Path("/x"), sha256="0" * 64, size_bytes=1, verified=True)
    journal.end_phase(phase, "ok")


def test_forward_goes_on_from_the_first_batch_not_verified(
        stopped: tuple[Journal, int, object]) -> None:
    journal, release_id, (manifest, plan) = stopped  # type: ignore[misc]
    _snapshot(journal, release_id, plan.hosts, [i["name"] for i in plan.agent_items])
    journal.set_host_state(release_id, "p1", "verified")
    journal.set_host_state(release_id, "p2", "applying")
    journal.begin_phase(release_id, "apply:batch2")
    record = journal.release(release_id)
    stop = where_stopped(journal, record, plan)
    assert stop.first_batch == 2 and stop.phase is not None
    assert stop.phase.name == "apply:batch2" and stop.baseline is not None
    assert stop.baseline.p95_ms == 9
    assert "stopped in phase apply:batch2 (running)" in stop.describe(record)
    assert forward_refusal(journal, record, manifest, plan, stop) is None
    assert close_stale_phases(journal, release_id) == ["apply:batch2"]
    assert where_stopped(journal, record, plan).phase.state == "failed"  # type: ignore[union-attr]


def test_forward_is_refused_without_a_complete_snapshot(
        stopped: tuple[Journal, int, object]) -> None:
    journal, release_id, (manifest, plan) = stopped  # type: ignore[misc]
    record = journal.release(release_id)
    refusal = forward_refusal(journal, record, manifest, plan,
                              where_stopped(journal, record, plan))
    assert refusal == "the snapshot is incomplete (its phase never ended ok)"
    names = [i["name"] for i in plan.agent_items]
    _snapshot(journal, release_id, plan.hosts[:2], names)
    refusal = forward_refusal(journal, record, manifest, plan,
                              where_stopped(journal, record, plan))
    assert refusal is not None and refusal.startswith("the snapshot is incomplete: p3 has")


def test_forward_is_refused_when_the_manifest_changed(
        stopped: tuple[Journal, int, object]) -> None:
    journal, release_id, (manifest, plan) = stopped  # type: ignore[misc]
    _snapshot(journal, release_id, plan.hosts, [i["name"] for i in plan.agent_items])
    path = manifest.source_path
    path.write_text(path.read_text() + "\n# edited after the release started\n")
    edited = load_manifest(path)
    record = journal.release(release_id)
    refusal = forward_refusal(journal, record, edited, plan,
                              where_stopped(journal, record, plan))
    assert refusal is not None and "changed since the release started" in refusal
