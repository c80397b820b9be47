"""Several controllers, one journal on PostgreSQL: locks that free themselves, a journal
copied from SQLite, and a clear exit 7 when the database cannot be reached.

No lab: the controllers are real ``relctl`` processes with their own state directories,
releasing to an inventory whose only host nobody answers for (127.0.70.9, port 1), so
nothing on this machine is ever changed. Their load gate measures a tiny HTTP service on
127.0.70.2; the PostgreSQL is the session's cluster on 127.0.70.1
(``tests/integration/conftest.py``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from controller.journal import Holder, Journal
from tests.http_target import LOCUSTFILE, HealthServer
from tests.pg_cluster import ADDRESS, free_port
from tests.relctl_cli import RELCTL, relctl

MANIFEST = """\
release: web-{version}
version: "{version}"
service: web
environment: shared
targets: app_primary
items:
  - {{kind: file, name: web-config, path: /etc/web/web.conf}}
playbooks:
  apply: [site.yml]
gates:
  locust:
    locustfile: {locustfile}
    url: {url}
    users: 2
    spawn_rate: 2
    duration_s: {duration}
    thresholds: {{min_requests: 1, max_failure_ratio: 1}}
owners:
  release_manager: Ada Ops
"""
INVENTORY = """\
all:
  children:
    app_primary:
      hosts:
        web-1: {ansible_host: 127.0.70.9, ansible_port: 1, ansible_user: nobody}
"""


@dataclass
class Site:
    """What both controllers release: manifests, an inventory, a service to load."""

    root: Path
    url: str

    def manifest(self, version: str, duration_s: int) -> Path:
        path = self.root / f"web-{version}.yml"
        path.write_text(MANIFEST.format(version=version, locustfile=LOCUSTFILE, url=self.url,
                                        duration=duration_s))
        return path

    @property
    def inventory(self) -> Path:
        return self.root / "inventory" / "hosts.yml"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    (tmp_path / "site.yml").write_text(
        "- name: Configure web\n  hosts: all\n  gather_facts: false\n  tasks: []\n")
    (tmp_path / "inventory").mkdir()
    (tmp_path / "inventory" / "hosts.yml").write_text(INVENTORY)
    (tmp_path / "inventory" / "ansible.cfg").write_text(
        "[defaults]\nhost_key_checking = False\n[ssh_connection]\n"
        "ssh_args = -o ConnectTimeout=3 -o ControlMaster=no\n")
    with HealthServer("127.0.70.2") as server:
        yield Site(tmp_path, server.url)


def controller(state: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """One ``relctl`` run of a controller with its own state directory, on the journal."""
    return relctl(state, "--journal", url, *args, timeout=300)


def status(state: Path, url: str) -> dict[str, object]:
    ran = controller(state, url, "status", "--json")
    assert ran.returncode in (0, 1, 5), ran.stderr
    return json.loads(ran.stdout)  # type: ignore[no-any-return]


def test_two_controllers_one_lock_that_frees_itself(site: Site, pg_url: str,
                                                    tmp_path: Path) -> None:
    first_state, second_state = tmp_path / "ctl-1", tmp_path / "ctl-2"
    first = subprocess.Popen(
        [*RELCTL, "--state-dir", str(first_state), "--journal", pg_url, "apply",
         str(site.manifest("1.1.0", 120)), "--inventory", str(site.inventory), "--yes"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_for_lock(pg_url, first.pid)
        second = site.manifest("1.2.0", 2)
        refused = controller(second_state, pg_url, "apply", str(second), "--inventory",
                             str(site.inventory), "--yes")
        assert refused.returncode == 5, refused.stderr
        assert "locked by release web-1.1.0: held by " in refused.stderr
        assert f"pid {first.pid}" in refused.stderr
        [lock] = status(second_state, pg_url)["locks"]  # type: ignore[misc]
        assert (lock["release"], lock["holder_state"]) == ("web-1.1.0", "alive")

        os.killpg(first.pid, signal.SIGKILL)  # the controller and its Locust: kill -9
        first.wait(timeout=30)
        assert _eventually(lambda: status(second_state, pg_url)["locks"][0]  # type: ignore[index]
                           ["holder_state"] == "gone")

        went_on = controller(second_state, pg_url, "apply", str(second), "--inventory",
                             str(site.inventory), "--yes")
        assert went_on.returncode not in (0, 5), went_on.stderr  # past the lock: no host
        assert "no host was changed" in went_on.stderr, went_on.stderr
        with Journal(pg_url) as journal:
            taken = [e.message for e in journal.events() if "taken over" in e.message]
            assert taken and "from web-1.1.0 (" in taken[0] and f"pid {first.pid})" in taken[0]
            assert journal.find_release("web-1.2.0").state == "aborted"  # type: ignore[union-attr]
            assert [r.name for r in journal.unfinished_releases()] == ["web-1.1.0"]

        resumed = controller(second_state, pg_url, "resume", "--inventory",
                             str(site.inventory), "--json")
        assert resumed.returncode == 3, resumed.stderr  # rolled back (it touched no host)
        assert json.loads(resumed.stdout)["release"] == "web-1.1.0"
        with Journal(pg_url) as journal:
            assert journal.unfinished_releases() == []
            assert journal.locks() == []
            assert journal.find_release("web-1.1.0").state == "rolled_back"  # type: ignore[union-attr]
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()


def _wait_for_lock(url: str, pid: int, within_s: float = 60) -> None:
    def held() -> bool:
        with Journal(url) as journal:
            lock = journal.lock_status("shared")
            return lock is not None and lock.holder.pid == pid
    assert _eventually(held, within_s), "the first controller never took the lock"


def _eventually(check: object, within_s: float = 15) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.2)
    return False


# --- journal migrate -----------------------------------------------------------------


def _fill(journal: Journal) -> None:
    """Releases (one released, one rolled back and bad), phases, hosts, snapshots, gates,
    sign-offs, events, a continuity record and a monitor with a round."""
    ada = Holder("ada", "ctl-1", 4242, 1000.25)
    for version, state in (("1.0.0", "released"), ("1.1.0", "rolled_back")):
        rid = journal.start_release(name=f"web-{version}", version=version, service="web",
                                    environment="shared", manifest_path=Path("/m.yml"),
                                    manifest_sha256="ab" * 32, operator=ada)
        phase = journal.begin_phase(rid, "baseline", {"hosts": ["web-1"]})
        journal.end_phase(phase, "ok", {"figures": {"rps": 31.5}})
        journal.set_host_state(rid, "web-1", "verified", version_before="0.9",
                               version_after=version)
        journal.add_snapshot(rid, host="web-1", item="web-config", kind="file",
                             path=Path(f"/s/{rid}"), sha256="cd" * 32, size_bytes=3 << 31,
                             verified=True)
        journal.add_gate_result(rid, phase="candidate", kind="locust", verdict="pass",
                                figures={"candidate": {"p95_ms": 12.5, "rps": 40.0}})
        journal.add_signoff(f"web-{version}", "uat", "Uma", note="ok")
        journal.set_release_state(rid, state, exit_code=0 if state == "released" else 3)
    journal.mark_bad(rid, "slow")
    record = journal.begin_continuity("replication", "web", "shared", {"bytes": 10})
    journal.end_continuity(record, "ok", {"seconds": 1.5})
    monitor = journal.claim_monitor(1, {"every": 300})
    journal.end_round(journal.begin_round(monitor, 1), "pass", {"p95_ms": 11.0})
    journal.end_monitor(monitor, "passed", exit_code=0, message="warranty passed")


def test_journal_migrate_copies_every_row_and_every_answer(pg_url: str, tmp_path: Path) -> None:
    old = tmp_path / "old" / "journal.sqlite"
    with Journal(old) as journal:
        _fill(journal)
        counts = journal.row_counts()
    state = tmp_path / "state"
    moved = relctl(state, "journal", "migrate", "--from", f"sqlite:{old}", "--to", pg_url,
                   "--json")
    assert moved.returncode == 0, moved.stderr
    report = json.loads(moved.stdout)
    assert report["counts"] == counts and report["rows"] == sum(counts.values())
    password = urlsplit(pg_url).password
    assert password and ":***@" in report["to"] and password not in moved.stdout
    with Journal(pg_url) as journal:
        assert journal.row_counts() == counts
        assert journal.start_release(  # ids continue after the copied ones
            name="web-2.0.0", version="2.0.0", service="web", environment="other",
            manifest_path=Path("/m.yml"), manifest_sha256="ab" * 32) == 3
    for args in (["history", "--environment", "shared", "--json"],
                 ["show", "web-1.1.0", "--json"], ["show", "web-1.0.0", "--json"],
                 ["report", "web-1.1.0", "--format", "json"],
                 ["report", "web-1.0.0", "--format", "markdown"]):
        before = relctl(state, "--journal", f"sqlite:{old}", *args)
        after = relctl(state, "--journal", pg_url, *args)
        assert before.returncode == after.returncode == 0, (args, after.stderr)
        assert after.stdout == before.stdout, args

    again = relctl(state, "journal", "migrate", "--from", f"sqlite:{old}", "--to", pg_url)
    assert again.returncode == 2 and "is not empty" in again.stderr


def test_journal_migrate_refuses_while_a_release_holds_a_lock(pg_url: str,
                                                              tmp_path: Path) -> None:
    old = tmp_path / "journal.sqlite"
    with Journal(old) as journal:
        journal.acquire_lock("shared", "web-1.0.0")
        refused = relctl(tmp_path, "journal", "migrate", "--from", str(old), "--to", pg_url)
    assert refused.returncode == 5 and "locks held (shared)" in refused.stderr
    with Journal(pg_url) as journal:
        assert sum(journal.row_counts().values()) == 0


# --- an unreachable database ---------------------------------------------------------


def test_an_unreachable_journal_is_exit_7_and_touches_nothing(site: Site,
                                                              tmp_path: Path) -> None:
    url = f"postgresql://relctl:hunter2-pw@{ADDRESS}:{free_port(ADDRESS)}/journal"
    state = tmp_path / "state"
    for args in (["status"], ["apply", str(site.manifest("1.1.0", 2)), "--inventory",
                              str(site.inventory), "--yes"]):
        ran = relctl(state, "--journal", url, *args)
        assert ran.returncode == 7, ran.stderr
        assert "cannot reach the journal database postgresql://relctl:***@" in ran.stderr
        assert "hunter2-pw" not in ran.stdout + ran.stderr
    env_ran = relctl(state, "status", env={"RELCTL_JOURNAL": url})
    assert env_ran.returncode == 7 and "hunter2-pw" not in env_ran.stderr
    assert not state.exists() or not any(state.rglob("*"))
