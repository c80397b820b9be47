"""ledger-migrate: schema 1 -> 2 conversion of a real database."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from tests.unit.ledger_support import harness

SAMPLE = [("alice", 100), ("bob", -250), ("alice", 300), ("carol", 0), ("bob", 99_999)]




def schema_1_db(releases: dict[str, Path], datadir: Path) -> list[dict[str, object]]:
    """Fill a schema-1 database through 1.1.0's API; return the stored txs."""
    with harness.running(releases["1.1.0"], datadir) as srv:
        return [srv.post("/tx", {"account": a, "amount_cents": n})[1] for a, n in SAMPLE]


def migrate(release: Path, datadir: Path, *args: str) -> tuple[int, str, str]:
    config = harness.write_config(datadir, harness.free_port())
    result = harness.run_tool(release, "ledger-migrate", "--config", str(config), *args)
    return result.returncode, result.stdout, result.stderr


def test_check_reports_the_plan(releases: dict[str, Path], tmp_path: Path) -> None:
    rc, out, _ = migrate(releases["1.2.0"], tmp_path, "--check")
    assert (rc, json.loads(out)["action"]) == (0, "create")
    schema_1_db(releases, tmp_path)
    report = json.loads(migrate(releases["1.2.0"], tmp_path, "--check")[1])
    assert report == {
        "action": "migrate",
        "code_schema": 2,
        "database": str(tmp_path / "ledger.db"),
        "db_schema": 1,
    }
    assert json.loads(migrate(releases["1.1.0"], tmp_path, "--check")[1])["action"] == "none"


def test_migration_preserves_every_transaction(releases: dict[str, Path], tmp_path: Path) -> None:
    before = schema_1_db(releases, tmp_path)
    rc, out, err = migrate(releases["1.2.0"], tmp_path)
    assert rc == 0, err
    assert "schema 1 -> 2: 5 transactions, 3 accounts converted" in out
    assert "migrated schema 1 -> 2" in out
    assert len(list(tmp_path.glob("ledger.db.schema1-*.bak"))) == 1
    with harness.running(releases["1.2.0"], tmp_path) as srv:
        for tx in before:
            status, after = srv.get(f"/tx/{tx['id']}")[:2]
            assert status == 200
            assert after == {**tx, "currency": "EUR"}
        assert srv.get("/accounts/bob/balance")[1]["balance_cents"] == 99_749
        assert srv.post("/tx", {"account": "alice", "amount_cents": 1})[1]["id"] == 6


def test_migration_is_idempotent(releases: dict[str, Path], tmp_path: Path) -> None:
    schema_1_db(releases, tmp_path)
    assert migrate(releases["1.2.0"], tmp_path)[0] == 0
    rc, out, _ = migrate(releases["2.0.0"], tmp_path)
    assert rc == 0
    assert "schema 2 -> 2: already up to date" in out
    assert len(list(tmp_path.glob("*.bak"))) == 1


def test_schema_2_layout(releases: dict[str, Path], tmp_path: Path) -> None:
    schema_1_db(releases, tmp_path)
    migrate(releases["1.2.0"], tmp_path, "--no-backup")
    conn = sqlite3.connect(tmp_path / "ledger.db")
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
        columns = [row[1] for row in conn.execute("PRAGMA table_info(tx)")]
        assert columns == ["id", "account_id", "amount_cents", "currency", "created_at"]
        names = [row[0] for row in conn.execute("SELECT name FROM accounts ORDER BY id")]
        assert names == ["alice", "bob", "carol"]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        conn.close()


def test_downgrade_is_refused_and_data_untouched(releases: dict[str, Path], tmp_path: Path) -> None:
    schema_1_db(releases, tmp_path)
    migrate(releases["1.2.0"], tmp_path, "--no-backup")
    db = tmp_path / "ledger.db"
    content = db.read_bytes()
    rc, _, err = migrate(releases["1.0.0"], tmp_path)
    assert rc == 3
    assert "downgrades are not supported" in err
    assert db.read_bytes() == content


def test_absent_database_is_left_for_the_server(releases: dict[str, Path], tmp_path: Path) -> None:
    rc, out, _ = migrate(releases["1.2.0"], tmp_path)
    assert rc == 0 and "it will be created at schema 2" in out
    assert not (tmp_path / "ledger.db").exists()
