"""relctl's Litestream agent against the real litestream binary relctl ships, on this
machine (no lab): start once, status with the shipped transaction's time, restore into
another live database, stop only its own process."""

from __future__ import annotations

import base64
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from controller.agent import litestream_agent
from controller.engine.continuity.litestream import shipped_binary


def agent(command: str, spec: dict[str, Any]) -> dict[str, Any]:
    encoded = base64.b64encode(json.dumps(spec).encode()).decode()
    done = subprocess.run([sys.executable, litestream_agent.__file__, command, encoded],
                          capture_output=True, text=True, timeout=120, check=False)
    reply: dict[str, Any] = json.loads(done.stdout)
    assert (done.returncode == 0) == bool(reply["ok"]), done.stderr
    return reply


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
            "out": str(tmp_path / "out"),
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
                                     "dbs": [{**spec["dbs"][0], "path": str(backup)}]})
        assert restored["dbs"]["ledger-db"]["txid"] == state["replica_txid"]
        rows = sqlite3.connect(backup).execute("SELECT amount FROM tx ORDER BY id").fetchall()
        assert rows == [(1,), (2,), (3,), (4,), (5,)]
    finally:
        stopped = agent("stop", spec)
    assert stopped["stopped"] == pid and not psutil.pid_exists(pid)
    assert agent("stop", spec)["stopped"] is None  # nothing of ours runs: nothing killed


def test_restore_without_a_replica_is_reported_not_failed(spec: dict[str, Any]) -> None:
    reply = agent("restore", spec)
    assert reply["empty"] == "ledger-db" and reply["dbs"] == {}
