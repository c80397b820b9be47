"""The release journal: lifecycle, steps, queries, locks and redaction.

Every test of a journal (``target`` or ``journal``) runs here on an SQLite file in a
temporary folder, and again on a new database of a real PostgreSQL (a server: in
``tests/integration/test_journal_postgresql.py``). Where the backends differ on purpose
(locks: a process only its own host can see, against a session the database server
sees), a test says what each does.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from controller.errors import ExitCode, InputError
from controller.journal import (
    SCHEMA_VERSION,
    Holder,
    Journal,
    JournalError,
    JournalUnreachableError,
    LockedError,
    LockRecord,
    UnusableJournalError,
    current_holder,
    redact,
)
from controller.journal.backends.postgresql import translate_ddl
from tests.pg_cluster import ADDRESS, free_port

ADA = Holder("ada", "ctl-1", 4242, 1000.0)
BOB = Holder("bob", "ctl-2", 4343, 2000.0)


class Clock:
    """A clock that moves 1.5 s each time it is read."""

    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 22, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1.5)
        return self.now


Target = Path | str


@pytest.fixture
def target(tmp_path: Path) -> Target:
    """Where a test's journal lives: a new SQLite file (a new PostgreSQL database in
    ``tests/integration/test_journal_postgresql.py``)."""
    return tmp_path / "state" / "journal.db"


@pytest.fixture
def journal(target: Target) -> Iterator[Journal]:
    with Journal(target, clock=Clock()) as opened:
        yield opened


def raw_sql(target: Target, statement: str) -> list[tuple[object, ...]]:
    """One statement on the journal's database, around relctl."""
    if isinstance(target, Path):
        with sqlite3.connect(target) as raw:
            rows = raw.execute(statement).fetchall()
        raw.close()
        return rows
    with psycopg.connect(target, autocommit=True) as conn:
        cursor = conn.execute(statement.encode())
        return cursor.fetchall() if cursor.description else []


def start(journal: Journal, name: str = "ledger-1.1.0", *, service: str = "ledger",
          environment: str = "lab") -> int:
    """Start a release of ``name`` (version taken from the name)."""
    return journal.start_release(
        name=name, version=name.rsplit("-", 1)[-1], service=service, environment=environment,
        manifest_path=Path(f"/m/{name}.yml"), manifest_sha256="ab" * 32, operator=ADA,
    )


def released(journal: Journal, name: str, **scope: str) -> int:
    """A release of ``name`` that went through."""
    release_id = start(journal, name, **scope)
    journal.set_release_state(release_id, "released", exit_code=0)
    return release_id


# --- the file --------------------------------------------------------------------------


def test_new_journal_is_at_the_current_schema(journal: Journal, target: Target) -> None:
    assert journal.schema_version() == SCHEMA_VERSION
    if isinstance(target, Path):
        assert raw_sql(target, "PRAGMA journal_mode") == [("wal",)]
        assert raw_sql(target, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    else:
        assert raw_sql(target, "SELECT version FROM relctl_schema") == [(SCHEMA_VERSION,)]


def test_every_write_is_visible_to_another_connection_at_once(journal: Journal) -> None:
    release_id = start(journal)
    phase_id = journal.begin_phase(release_id, "snapshot")
    with Journal(journal.target) as other:
        assert other.release(release_id).state == "planned"
        assert other.phases(release_id)[0].state == "running"
        other.end_phase(phase_id, "ok")
    assert journal.phase(phase_id).state == "ok"


def test_reopening_keeps_the_data(target: Target) -> None:
    with Journal(target) as first:
        release_id = start(first)
    with Journal(target) as second:
        assert second.release(release_id).name == "ledger-1.1.0"
        assert start(second, "ledger-1.2.0") == release_id + 1  # ids go on


def test_a_newer_schema_is_refused(target: Target) -> None:
    Journal(target).close()
    if isinstance(target, Path):
        raw_sql(target, f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    else:
        raw_sql(target, f"UPDATE relctl_schema SET version = {SCHEMA_VERSION + 1}")
    with pytest.raises(JournalError, match="schema version"):
        Journal(target)


def test_something_that_is_not_a_journal_is_refused(target: Target) -> None:
    if isinstance(target, Path):
        target.parent.mkdir(parents=True)
        target.write_text("not sqlite " * 100)
        match = "cannot use the journal"
    else:
        raw_sql(target, "CREATE TABLE invoices (id integer)")
        match = "not a relctl journal .it holds invoices"
    with pytest.raises(UnusableJournalError, match=match) as caught:
        Journal(target)
    assert caught.value.exit_code == ExitCode.INVALID_INPUT


def test_the_schema_translates_to_postgresql_without_a_copy_of_it() -> None:
    ddl = translate_ddl("CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, n INTEGER,"
                         " x REAL, state TEXT CHECK (state IN ('real', 'integer')))")
    assert ddl == ("CREATE TABLE t (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
                   " n BIGINT, x DOUBLE PRECISION,"
                   " state TEXT CHECK (state IN ('real', 'integer')))")


def test_an_unreachable_database_is_exit_7_and_never_shows_the_password() -> None:
    url = f"postgresql://relctl:s3cret-pw@{ADDRESS}:{free_port(ADDRESS)}/journal"
    began = time.monotonic()
    with pytest.raises(JournalUnreachableError) as caught:
        Journal(url)
    error = caught.value
    assert int(error.exit_code) == 7
    assert "s3cret-pw" not in error.message + (error.hint or "")
    assert f"postgresql://relctl:***@{ADDRESS}" in error.message
    assert "nothing was changed" in (error.hint or "")
    assert time.monotonic() - began < 10


def test_an_unknown_journal_kind_is_invalid_input() -> None:
    with pytest.raises(UnusableJournalError, match="unknown journal kind 'mysql'") as caught:
        Journal("mysql://u:pw@db/j")
    assert "pw" not in caught.value.message.replace("mysql://u:***@", "")


# --- releases --------------------------------------------------------------------------


def test_release_lifecycle(journal: Journal) -> None:
    release_id = start(journal)
    record = journal.release(release_id)
    assert (record.state, record.bad, record.ended) == ("planned", False, None)
    assert record.operator == ADA
    assert record.manifest_path == Path("/m/ledger-1.1.0.yml")
    assert [r.id for r in journal.unfinished_releases()] == [release_id]
    for state in ("snapshotting", "applying", "verifying"):
        journal.set_release_state(release_id, state)
        assert journal.release(release_id).ended is None
    journal.set_release_state(release_id, "released", exit_code=0, message="all gates passed")
    record = journal.release(release_id)
    assert (record.state, record.exit_code, record.message) == ("released", 0, "all gates passed")
    assert record.finished and record.ended is not None and record.ended > record.started
    assert journal.unfinished_releases() == []


def test_unknown_release_is_an_input_error(journal: Journal) -> None:
    with pytest.raises(InputError, match="no release #99"):
        journal.release(99)
    with pytest.raises(InputError):
        journal.set_release_state(99, "failed")
    with pytest.raises(ValueError, match="unknown release state"):
        journal.set_release_state(start(journal), "exploded")  # type: ignore[arg-type]


def test_find_release_by_id_or_latest_name(journal: Journal) -> None:
    first = start(journal, "ledger-2.0.0")
    second = start(journal, "ledger-2.0.0")
    found = [journal.find_release(key) for key in (first, str(first), f"#{first}", "ledger-2.0.0")]
    assert [r.id if r else None for r in found] == [first, first, first, second]
    assert journal.find_release("ledger-9.9.9") is None
    assert journal.find_release(99) is None


def test_history_is_newest_first_and_filtered(journal: Journal) -> None:
    ids = [start(journal, f"ledger-1.{i}.0") for i in range(4)]
    other = start(journal, "ledger-1.9.0", environment="prod")
    assert [r.id for r in journal.history()] == [other, *reversed(ids)]
    assert [r.id for r in journal.history(limit=2)] == [other, ids[3]]
    assert [r.id for r in journal.history(environment="lab")] == list(reversed(ids))
    assert journal.history(service="nope") == []


def test_last_good_release_skips_bad_and_unreleased(journal: Journal) -> None:
    assert journal.last_good_release("ledger", "lab") is None
    good = released(journal, "ledger-1.1.0")
    bad = released(journal, "ledger-1.2.0")
    journal.mark_bad(bad, "corrupts balances")
    failed = start(journal, "ledger-2.0.1")
    journal.set_release_state(failed, "rolled_back", exit_code=int(ExitCode.ROLLED_BACK))
    released(journal, "ledger-1.3.0", environment="prod")
    start(journal, "ledger-1.4.0")  # still running
    last = journal.last_good_release("ledger", "lab")
    assert last is not None and last.id == good
    assert journal.release(bad).bad


def test_unfinished_releases_by_environment(journal: Journal) -> None:
    lab = start(journal)
    prod = start(journal, "ledger-1.2.0", environment="prod")
    released(journal, "ledger-1.3.0")
    assert [r.id for r in journal.unfinished_releases()] == [lab, prod]
    assert [r.id for r in journal.unfinished_releases("prod")] == [prod]


def test_events_log(journal: Journal) -> None:
    release_id = start(journal)
    journal.log(release_id, "batch 1: h1")
    journal.set_release_state(release_id, "failed", message="gate failed")
    journal.log(None, "unrelated")
    messages = [e.message for e in journal.events(release_id)]
    assert messages[1:] == ["batch 1: h1", "state: failed (gate failed)"]
    assert "started by ada@ctl-1 (pid 4242)" in messages[0]
    assert journal.events()[-1].release_id is None


# --- steps -----------------------------------------------------------------------------


def test_phases_record_start_end_seconds_and_redacted_detail(journal: Journal) -> None:
    release_id = start(journal)
    phase_id = journal.begin_phase(release_id, "apply:batch1", {"hosts": ["h1"]})
    running = journal.phase(phase_id)
    assert (running.state, running.ended, running.seconds) == ("running", None, None)
    done = journal.end_phase(phase_id, "failed", {"error": "boom", "vault_password": "s3cret"})
    assert done.state == "failed" and done.seconds == 1.5
    assert done.detail == {"error": "boom", "vault_password": "***"}
    skipped = journal.begin_phase(release_id, "gate:locust:batch1")
    assert journal.end_phase(skipped, "skipped").detail == {}
    assert [p.name for p in journal.phases(release_id)] == ["apply:batch1", "gate:locust:batch1"]
    with pytest.raises(ValueError, match="not running"):
        journal.end_phase(skipped, "running")


def test_host_states_keep_the_versions_seen(journal: Journal) -> None:
    release_id = start(journal)
    journal.set_host_state(release_id, "h2", "pending")
    journal.set_host_state(release_id, "h1", "snapshotted", version_before="1.0.0")
    journal.set_host_state(release_id, "h1", "applied", version_after="1.1.0")
    journal.set_host_state(release_id, "h1", "verified")
    h1, h2 = journal.host_states(release_id)
    assert (h1.host, h1.state, h1.version_before, h1.version_after) == (
        "h1", "verified", "1.0.0", "1.1.0")
    assert (h2.host, h2.state) == ("h2", "pending")


def test_snapshots(journal: Journal, tmp_path: Path) -> None:
    release_id = start(journal)

    def snap(host: str, path: Path, meta: dict[str, str] | None = None) -> int:
        return journal.add_snapshot(release_id, host=host, item="ledger-config", kind="file",
                                    path=path, sha256="cd" * 32, size_bytes=120, meta=meta)

    first = snap("h1", tmp_path / "a", {"mode": "0644"})
    snap("h2", tmp_path / "b")
    again = snap("h1", tmp_path / "c", {"api_key": "k"})
    assert again == first  # a retaken snapshot replaces the earlier one
    journal.set_snapshot_verified(first)
    h1, h2 = journal.snapshots(release_id)
    assert (h1.host, h1.path, h1.size_bytes, h1.meta, h1.verified) == (
        "h1", tmp_path / "c", 120, {"api_key": "***"}, True)
    assert (h2.host, h2.verified) == ("h2", False)
    assert [s.host for s in journal.snapshots(release_id, host="h2")] == ["h2"]


def test_gate_results(journal: Journal, tmp_path: Path) -> None:
    release_id = start(journal)
    figures = {"p50": 12.0, "p95": 40.5, "p99": 80.0, "rps": 30.2, "failure_ratio": 0.0,
               "requests": 300}
    journal.add_gate_result(release_id, phase="gate:testinfra:batch1", kind="testinfra",
                            verdict="pass", junit=tmp_path / "junit.xml")
    journal.add_gate_result(release_id, phase="gate:locust:batch1", kind="locust",
                            verdict="inconclusive", figures=figures)
    testinfra, locust = journal.gate_results(release_id)
    assert (testinfra.kind, testinfra.verdict, testinfra.junit) == (
        "testinfra", "pass", tmp_path / "junit.xml")
    assert (locust.verdict, locust.figures, locust.junit) == ("inconclusive", figures, None)


def test_signoffs(journal: Journal) -> None:
    journal.add_signoff("ledger-1.2.0", "release_manager", "Ada Ops")
    journal.add_signoff("ledger-1.2.0", "approver", "Change Board", note="CAB-42")
    journal.add_signoff("ledger-2.0.0", "approver", "Change Board")
    signoffs = journal.signoffs("ledger-1.2.0")
    assert [(s.role, s.by, s.note) for s in signoffs] == [
        ("release_manager", "Ada Ops", ""), ("approver", "Change Board", "CAB-42"),
    ]


# --- locks -----------------------------------------------------------------------------


def test_acquire_and_release_a_lock(journal: Journal) -> None:
    lock = journal.acquire_lock("lab", "ledger-1.1.0", ADA)
    assert (lock.environment, lock.release, lock.holder) == ("lab", "ledger-1.1.0", ADA)
    assert journal.lock_status("lab") == lock
    assert journal.acquire_lock("lab", "ledger-1.1.0", ADA) == lock  # same holder: no-op
    assert journal.acquire_lock("prod", "ledger-1.1.0", ADA).environment == "prod"
    assert [x.environment for x in journal.locks()] == ["lab", "prod"]
    assert not journal.release_lock("lab", "ledger-2.0.0")  # not that release's lock
    assert journal.release_lock("lab", "ledger-1.1.0")
    assert journal.lock_status("lab") is None
    assert journal.acquire_lock("lab", "ledger-2.0.0", BOB).holder == BOB


def test_second_acquire_names_the_holder(journal: Journal) -> None:
    journal.acquire_lock("lab", "ledger-1.1.0", ADA)
    with pytest.raises(LockedError) as caught:
        journal.acquire_lock("lab", "ledger-1.2.0", BOB)
    error = caught.value
    assert error.exit_code == ExitCode.LOCKED
    assert int(error.exit_code) == 5
    assert error.message == (
        "environment 'lab' is locked by release ledger-1.1.0: held by ada@ctl-1, pid 4242, "
        "since 2026-12-01 22:00:01 UTC"
    )
    assert journal.lock_status("lab").holder == ADA  # type: ignore[union-attr]


def test_concurrent_acquires_let_exactly_one_win(target: Target) -> None:
    Journal(target).close()
    contended, done, outcomes = threading.Barrier(8), threading.Barrier(8), []

    def contend(index: int) -> None:
        with Journal(target) as own:
            contended.wait()
            try:
                own.acquire_lock("lab", f"r{index}", Holder("u", "h", 100 + index, 1.0))
                outcomes.append("won")
            except LockedError:
                outcomes.append("locked")
            done.wait()  # the winner's session stays open while the others look

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["locked"] * 7 + ["won"]


def test_break_lock_refuses_a_live_holder_unless_forced(journal: Journal) -> None:
    me = current_holder()
    journal.acquire_lock("lab", "ledger-1.1.0", me)
    with pytest.raises(LockedError, match=r"still running release ledger-1\.1\.0"):
        journal.break_lock("lab")
    assert journal.lock_status("lab") is not None
    broken = journal.break_lock("lab", force=True)
    assert broken is not None and broken.holder == me
    assert journal.lock_status("lab") is None
    assert journal.acquire_lock("lab", "ledger-1.2.0", BOB).holder == BOB  # free again


def test_a_dead_holders_lock(journal: Journal) -> None:
    """SQLite: stale, named so, until broken. PostgreSQL: taken over by the next acquire."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    dead = Holder("ada", socket.gethostname(), child.pid, 1000.0)
    journal.acquire_lock("lab", "ledger-1.1.0", dead)
    assert journal.holder_state(journal.lock_status("lab")) == "gone"  # type: ignore[arg-type]
    if journal.backend == "sqlite":
        with pytest.raises(LockedError) as caught:
            journal.acquire_lock("lab", "ledger-1.2.0", BOB)
        assert "stale" in (caught.value.hint or "")
        broken = journal.break_lock("lab")
        assert broken is not None and broken.holder == dead
        assert journal.lock_status("lab") is None
        assert "broken (holder gone)" in journal.events()[-1].message
    else:
        assert journal.acquire_lock("lab", "ledger-1.2.0", BOB).holder == BOB
        assert f"taken over from ledger-1.1.0 ({dead})" in journal.events()[-1].message


def test_break_lock_frees_a_reused_pid(journal: Journal) -> None:
    reused = Holder("ada", socket.gethostname(), os.getpid(), 12.0)  # live pid, other process
    journal.acquire_lock("lab", "ledger-1.1.0", reused)
    assert journal.break_lock("lab") is not None


def test_break_lock_of_a_holder_on_another_host(journal: Journal) -> None:
    """SQLite cannot see another host's processes: ``unknown``. PostgreSQL sees the
    holder's session (here this test's own): ``alive``. Neither breaks it unforced."""
    journal.acquire_lock("lab", "ledger-1.1.0", Holder("ada", "elsewhere.invalid", 1, 1.0))
    lock = journal.lock_status("lab")
    assert lock is not None
    expected = {"sqlite": ("unknown", r"ran on elsewhere\.invalid"),
                "postgresql": ("alive", r"ada@elsewhere\.invalid \(pid 1\) is still running")}
    state, refusal = expected[journal.backend]
    assert journal.holder_state(lock) == state
    with pytest.raises(LockedError, match=refusal):
        journal.break_lock("lab")
    assert journal.break_lock("lab", force=True) is not None
    assert journal.break_lock("lab") is None  # nothing left to break


def test_a_holder_whose_session_ended(target: Target) -> None:
    """The holder runs on, but its journal connection is gone (a network split, a
    machine that lost the database): PostgreSQL frees the lock, SQLite keeps it."""
    me = current_holder()
    with Journal(target) as first:
        first.acquire_lock("lab", "ledger-1.1.0", me)
    with Journal(target) as second:
        if second.backend == "sqlite":
            with pytest.raises(LockedError, match=r"locked by release ledger-1\.1\.0") as caught:
                second.acquire_lock("lab", "ledger-1.2.0", BOB)
            assert caught.value.hint == "wait for release ledger-1.1.0 to finish"
        else:
            assert second.acquire_lock("lab", "ledger-1.2.0", BOB).release == "ledger-1.2.0"


HOLDER = """
import sys, time
from controller.journal import Journal
journal = Journal(sys.argv[1])
journal.acquire_lock("lab", "ledger-1.1.0")
print("held", flush=True)
time.sleep(120)
"""


def test_a_controller_killed_with_sigkill_leaves_its_lock(target: Target) -> None:
    """Another process takes the lock and is killed -9. While it runs, the lock names it
    (exit 5). Afterwards: SQLite sees its pid gone (stale: broken by unlock/resume);
    PostgreSQL saw its session end, and the next acquire takes the lock, no unlock."""
    Journal(target).close()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(target)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with Journal(target) as journal:
            with pytest.raises(LockedError, match=f"pid {holder.pid}") as caught:
                journal.acquire_lock("lab", "ledger-1.2.0", BOB)
            assert int(caught.value.exit_code) == 5
            holder.kill()
            holder.wait(timeout=30)
            lock = journal.lock_status("lab")
            assert lock is not None and lock.holder.pid == holder.pid
            assert _eventually_gone(journal, lock)
            if journal.backend == "sqlite":
                with pytest.raises(LockedError, match=r"locked by release ledger-1\.1\.0"):
                    journal.acquire_lock("lab", "ledger-1.2.0", BOB)
                assert journal.break_lock("lab") is not None
            assert journal.acquire_lock("lab", "ledger-1.2.0", BOB).holder == BOB
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def _eventually_gone(journal: Journal, lock: LockRecord, within_s: float = 10.0) -> bool:
    """The server notices a killed client's closed socket at once, but not synchronously."""
    deadline = time.monotonic() + within_s
    while journal.holder_state(lock) != "gone":
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# --- redaction -------------------------------------------------------------------------


def test_redact_masks_secret_keys_at_any_depth() -> None:
    value = {
        "user": "ada", "Password": "p", "db": {"API_TOKEN": "t", "ssh_key": None},
        "hosts": [{"name": "h1", "client_secret": "s"}], "count": 3,
    }
    assert redact(value) == {
        "user": "ada", "Password": "***", "db": {"API_TOKEN": "***", "ssh_key": None},
        "hosts": [{"name": "h1", "client_secret": "***"}], "count": 3,
    }
    assert value["Password"] == "p"  # the original is left alone
    assert redact(["a", 1]) == ["a", 1]
    assert redact("password") == "password"


def test_a_phase_keeps_the_duration_its_process_measured(journal: Journal) -> None:
    release_id = start(journal)
    phase = journal.begin_phase(release_id, "snapshot")
    assert journal.end_phase(phase, "ok", seconds=2.25).seconds == 2.25
    other = journal.begin_phase(release_id, "apply:canary")
    assert journal.end_phase(other, "ok").seconds == 1.5  # the clock's step stands in


def test_a_replication_whose_controller_died_is_failed_not_running(target: Target,
                                                                    journal: Journal) -> None:
    # A controller killed (SIGKILL) in the middle of a replication: its record says running.
    crash = ("import os, signal, sys; from pathlib import Path; "
             "from controller.journal import Journal; t = sys.argv[1]; "
             "j = Journal(Path(t) if t.startswith('/') else t); "
             "print(j.begin_continuity('replication', 'ledger', 'lab'), flush=True); "
             "os.kill(os.getpid(), signal.SIGKILL)")
    killed = subprocess.run([sys.executable, "-c", crash, str(target)], capture_output=True,
                            text=True, check=False, cwd=Path(__file__).parents[2])
    assert killed.returncode == -9, killed.stderr
    crashed = int(killed.stdout)
    mine = journal.begin_continuity("replication", "ledger", "lab")  # this process: alive
    assert journal.continuity_record(crashed).state == "running"
    assert journal.settle_abandoned() == [crashed]
    record = journal.continuity_record(crashed)
    assert record.state == "failed" and record.ended is not None
    assert f"pid {record.detail['owner']['pid']}" in record.detail["problems"][0]
    assert journal.continuity_record(mine).state == "running"
    assert journal.settle_abandoned() == []  # settled once
