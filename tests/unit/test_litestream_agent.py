"""relctl's Litestream agent against the real litestream binary relctl ships, on this
machine (no lab): start once, status with the shipped transaction's time, restore into
another live database, stop only its own process."""

from __future__ import annotations

import base64
import hashlib
import sqlite3
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from controller.engine.continuity.litestream import shipped_binary
from tests.unit.agent_run import agent as run_agent


def agent(action: str, spec: dict[str, Any], fetch: bool = False) -> dict[str, Any]:
    """The host agent's ``litestream`` command, run as a host runs it."""
    return run_agent({"command": "litestream", "action": action, "spec": spec,
                      "fetch": fetch})


@pytest.fixture
def spec(tmp_path: Path) -> dict[str, Any]:
    db = tmp_path / "live.db"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE tx (id INTEGER PRIMARY KEY, amount INTEGER)")
    conn.commit()
    conn.close()
    return {"binary": str(shipped_binary()), "config": str(tmp_path / "etc" / "ls.yml"),
            "pidfile": str(tmp_path / "run" / "ls.pid"), "log": str(tmp_path / "ls.log"),
            "warm_dir": str(tmp_path / "warm"),
            "binary_sha256": hashlib.sha256(shipped_binary().read_bytes()).hexdigest(),
            "dbs": [{"name": "ledger-db", "path": str(db),
                     "replica": {"type": "file", "path": str(tmp_path / "replica")},
                     "sync_interval_ms": 200}]}


def test_replicate_status_restore_and_stop(spec: dict[str, Any], tmp_path: Path) -> None:
    started = agent("start", spec)
    pid = started["pid"]
    try:
        assert started["running"] and psutil.Process(pid).cmdline()[1] == "replicate"
        assert agent("start", spec)["pid"] == pid  # runs once
        assert (Path(spec["config"]).stat().st_mode & 0o777) == 0o600
        conn = sqlite3.connect(spec["dbs"][0]["path"])
        for amount in range(1, 6):
            conn.execute("INSERT INTO tx (amount) VALUES (?)", (amount,))
            conn.commit()
        conn.close()
        written = time.time()
        time.sleep(1.0)
        state = agent("status", spec)["dbs"]["ledger-db"]
        assert state["replica_txid"] is not None and state["lag_s"] == 0.0
        # the LTX header's milliseconds: shipped after the last write, within a second
        assert written <= state["replica_at"] <= written + 1.0
        # a backup host: its own live database (the service keeps it open), same replica
        backup = tmp_path / "backup.db"
        sqlite3.connect(backup).execute("CREATE TABLE other (x)").connection.close()
        restored = agent("restore", {**spec, "config": str(tmp_path / "etc" / "b.yml"),
                                     "dbs": [{**spec["dbs"][0], "path": str(backup)}]},
                         fetch=True)
        db = restored["dbs"]["ledger-db"]
        assert db["txid"] == state["replica_txid"] and db["warm"] is False  # no follower
        copy = base64.b64decode(restored["payloads"][db["payload"]])
        assert hashlib.sha256(copy).hexdigest() == db["sha256"]
        rows = sqlite3.connect(backup).execute("SELECT amount FROM tx ORDER BY id").fetchall()
        assert rows == [(1,), (2,), (3,), (4,), (5,)]
    finally:
        stopped = agent("stop", spec)
    assert stopped["stopped"] == pid and gone(pid)
    assert agent("stop", spec)["stopped"] is None  # nothing of ours runs: nothing killed


def test_restore_without_a_replica_is_reported_not_failed(spec: dict[str, Any]) -> None:
    reply = agent("restore", spec)
    assert reply["empty"] == "ledger-db" and reply["dbs"] == {}


def test_a_binary_that_is_not_relctls_is_reported_for_install(spec: dict[str, Any],
                                                               tmp_path: Path) -> None:
    other = tmp_path / "litestream"
    other.write_text("#!/bin/sh\necho not litestream\n")
    other.chmod(0o755)
    reply = agent("status", {**spec, "binary": str(other)})
    assert not reply["ok"] and reply["install"] is True
    assert not Path(spec["pidfile"]).exists()  # nothing was started


def test_a_warm_copy_follows_the_replica_and_a_failover_loads_it(spec: dict[str, Any],
                                                                 tmp_path: Path) -> None:
    """A backup host keeps a warm copy with Litestream's follow mode; the failover's
    restore stops the follower once it applied the newest shipped transaction and loads
    that copy into the live database: every row written before, none lost."""
    writer = agent("start", spec)["pid"]
    backup = {**spec, "config": str(tmp_path / "etc" / "b.yml"), "warm_dir":
              str(tmp_path / "b-warm"), "pidfile": str(tmp_path / "run" / "b.pid"),
              "dbs": [{**spec["dbs"][0],
                                                "path": str(tmp_path / "backup.db")}]}
    sqlite3.connect(backup["dbs"][0]["path"]).execute("CREATE TABLE other (x)") \
        .connection.close()
    follower = None
    try:
        followed = agent("follow", backup)
        assert followed["ok"], followed
        follower = followed["following"]["ledger-db"]
        assert psutil.Process(follower).cmdline()[1:2] == ["restore"]
        assert agent("follow", backup)["following"]["ledger-db"] == follower  # once
        conn = sqlite3.connect(spec["dbs"][0]["path"])
        for amount in range(1, 21):
            conn.execute("INSERT INTO tx (amount) VALUES (?)", (amount,))
            conn.commit()
            time.sleep(0.05)
        conn.close()
        time.sleep(1.5)  # Litestream looks at the WAL every second
        newest = shipped(spec)  # ... and ships what it found (sync every 200 ms)
        started = time.monotonic()
        restored = agent("restore", backup)
        took = time.monotonic() - started
        db = restored["dbs"]["ledger-db"]
        assert db["warm"] is True and db["txid"] == newest
        rows = sqlite3.connect(backup["dbs"][0]["path"]).execute(
            "SELECT amount FROM tx ORDER BY id").fetchall()
        assert rows == [(n,) for n in range(1, 21)]
        assert gone(follower)  # the backup is the writer now
        print(f"warm restore: {took:.3f} s")
    finally:
        stopped = agent("stop", backup)
        writer_stopped = agent("stop", spec)
    assert writer_stopped["stopped"] == writer, writer_stopped
    assert gone(writer) and follower is not None and gone(follower)
    assert stopped["followers_stopped"] == []  # the restore had stopped it already


def gone(pid: int) -> bool:
    """``pid`` no longer runs (exited; a zombie its new parent has not reaped yet too)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def shipped(spec: dict[str, Any], timeout: float = 20) -> int:
    """The replica's newest txid once the writer has shipped every local transaction."""
    deadline = time.monotonic() + timeout
    while True:
        state = agent("status", spec)["dbs"]["ledger-db"]
        if state["lag_s"] == 0.0 and state["replica_txid"] == state["local_txid"]:
            return int(state["replica_txid"])
        assert time.monotonic() < deadline, state
        time.sleep(0.2)
