"""Data-aware rollback of an SQLite item on the host (``host_store.restore_database``):
every write made since the snapshot survives the rollback, or is listed with its reason."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from controller.agent import host_store

SCHEMA_1 = """
CREATE TABLE txns (id INTEGER PRIMARY KEY AUTOINCREMENT, account TEXT NOT NULL,
                   amount INTEGER NOT NULL CHECK (amount > 0));
CREATE TABLE notes (body TEXT);
"""


def _db(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    return conn


@pytest.fixture
def live(tmp_path: Path) -> Path:
    path = tmp_path / "srv" / "app.db"
    path.parent.mkdir()
    conn = _db(path)
    conn.executescript(SCHEMA_1)
    for n in range(1, 6):
        conn.execute("INSERT INTO txns (account, amount) VALUES (?, ?)", (f"a{n}", n * 10))
    conn.execute("INSERT INTO notes VALUES ('first')")
    conn.close()
    return path


def _snapshot(live: Path, tmp_path: Path, on_rollback: str | None = None
              ) -> tuple[dict[str, Any], dict[str, Any], host_store.Store]:
    store = host_store.Store(str(tmp_path / "store"), "app.lab")
    item: dict[str, Any] = {"name": "db", "kind": "data", "path": str(live)}
    if on_rollback:
        item["on_rollback"] = on_rollback
    entry = {"kind": "data", **host_store.capture_entry(item, store)}
    return item, entry, store


def _rows(path: Path, query: str = "SELECT * FROM txns ORDER BY id") -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute(query).fetchall()
    finally:
        conn.close()


def _migrate_and_write(live: Path) -> None:
    """What a release does: a migration (a column, a table), then users write."""
    conn = _db(live)
    conn.executescript("ALTER TABLE txns ADD COLUMN memo TEXT; "
                       "CREATE TABLE audit (id INTEGER PRIMARY KEY, what TEXT); "
                       "PRAGMA user_version = 2;")
    conn.execute("INSERT INTO txns (account, amount, memo) VALUES ('b1', 70, 'new')")  # id 6
    conn.execute("INSERT INTO txns (account, amount, memo) VALUES ('b2', 80, 'new')")  # id 7
    conn.execute("UPDATE txns SET amount = 99 WHERE id = 2")
    conn.execute("DELETE FROM txns WHERE id = 3")
    conn.execute("INSERT INTO audit (what) VALUES ('created b1')")
    conn.close()


def test_nothing_written_leaves_the_file_byte_for_byte(live: Path, tmp_path: Path) -> None:
    item, entry, store = _snapshot(live, tmp_path)
    before = live.read_bytes()
    how, report = host_store.restore_database(item, entry, store)
    assert how == "unchanged"
    assert live.read_bytes() == before
    assert host_store.entry_matches(item, entry, report["digest"])


def test_writes_without_a_migration_stay_live(live: Path, tmp_path: Path) -> None:
    item, entry, store = _snapshot(live, tmp_path)
    conn = _db(live)
    conn.execute("INSERT INTO txns (account, amount) VALUES ('late', 5)")
    conn.close()
    how, _ = host_store.restore_database(item, entry, store)
    assert how == "kept"
    assert (6, "late", 5) in _rows(live)


def test_writes_after_a_migration_are_carried_into_the_old_schema(
        live: Path, tmp_path: Path) -> None:
    item, entry, store = _snapshot(live, tmp_path)
    _migrate_and_write(live)
    how, report = host_store.restore_database(item, entry, store)
    assert how == "carried"
    assert _rows(live) == [(1, "a1", 10), (2, "a2", 99), (4, "a4", 40), (5, "a5", 50),
                           (6, "b1", 70), (7, "b2", 80)]
    assert _rows(live, "PRAGMA user_version") == [(0,)]  # the old schema is back
    assert not Path(f"{live}-wal").exists() or Path(f"{live}-wal").stat().st_size == 0
    counts = report["tables"]["txns"]
    assert counts == {"insert:carried": 2, "update:carried": 1, "delete:carried": 1}
    assert report["not_carried"] == 1  # the audit row: no such table in the old schema
    assert report["listed"][0]["table"] == "audit"
    assert "does not exist" in report["listed"][0]["reason"]
    # the next id the service hands out follows the carried ones (no id reused)
    conn = _db(live)
    conn.execute("INSERT INTO txns (account, amount) VALUES ('after', 1)")
    assert _rows(live, "SELECT max(id) FROM txns") == [(8,)]
    conn.close()


def test_a_row_the_old_schema_refuses_is_listed_with_its_reason(
        live: Path, tmp_path: Path) -> None:
    item, entry, store = _snapshot(live, tmp_path, on_rollback="restore")
    conn = _db(live)
    conn.execute("PRAGMA user_version = 3")
    conn.execute("INSERT INTO txns (id, account, amount) VALUES (40, 'ok', 1)")
    conn.close()
    raw = sqlite3.connect(live, isolation_level=None)  # a "new schema" without the CHECK
    raw.execute("PRAGMA ignore_check_constraints = ON")
    raw.execute("INSERT INTO txns (id, account, amount) VALUES (41, 'zero', 0)")
    raw.close()
    how, report = host_store.restore_database(item, entry, store)
    assert how == "carried"
    assert [r[0] for r in _rows(live)] == [1, 2, 3, 4, 5, 40]
    assert report["not_carried"] == 1
    assert report["listed"][0]["row"]["id"] == 41
    assert "CHECK" in report["listed"][0]["reason"]


def test_discard_drops_and_lists(live: Path, tmp_path: Path) -> None:
    item, entry, store = _snapshot(live, tmp_path, on_rollback="discard")
    _migrate_and_write(live)
    how, report = host_store.restore_database(item, entry, store)
    assert how == "discarded"
    assert [r[0] for r in _rows(live)] == [1, 2, 3, 4, 5]
    assert report["tables"]["txns"] == {"insert:dropped": 2, "update:dropped": 1,
                                        "delete:dropped": 1}


def test_keep_never_restores(live: Path, tmp_path: Path) -> None:
    item, entry, store = _snapshot(live, tmp_path, on_rollback="keep")
    _migrate_and_write(live)
    how, _ = host_store.restore_database(item, entry, store)
    assert how == "kept"
    assert _rows(live, "PRAGMA user_version") == [(2,)]


def test_hostile_table_and_column_names_are_identifiers(live: Path, tmp_path: Path) -> None:
    conn = _db(live)
    conn.execute('CREATE TABLE "x""; DROP TABLE txns; --" ("a""b" INTEGER PRIMARY KEY, v)')
    conn.close()
    item, entry, store = _snapshot(live, tmp_path)
    conn = _db(live)
    conn.execute('INSERT INTO "x""; DROP TABLE txns; --" VALUES (1, 2)')
    conn.execute("PRAGMA user_version = 9")
    conn.close()
    how, report = host_store.restore_database(item, entry, store)
    assert how == "carried"
    assert len(_rows(live)) == 5
    assert _rows(live, 'SELECT * FROM "x""; DROP TABLE txns; --"') == [(1, 2)]
    assert report["not_carried"] == 0


def test_the_restore_copy_is_not_written_through_a_planted_link(
        live: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("root's file")
    for n in range(20):  # no predictable name to plant: a name is never reused
        (live.parent / f".relctl-restore-guess{n}").symlink_to(victim)
    item, entry, store = _snapshot(live, tmp_path)
    _migrate_and_write(live)
    host_store.restore_database(item, entry, store)
    assert victim.read_text() == "root's file"
    assert not live.is_symlink()


LEDGER_1_TO_2 = """
CREATE TABLE accounts (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
INSERT INTO accounts (name) SELECT DISTINCT account FROM txns ORDER BY account;
CREATE TABLE txns_new (id INTEGER PRIMARY KEY, account_id INTEGER NOT NULL,
                       amount INTEGER NOT NULL);
INSERT INTO txns_new SELECT t.id, a.id, t.amount FROM txns t JOIN accounts a ON a.name = t.account;
DROP TABLE txns; ALTER TABLE txns_new RENAME TO txns; PRAGMA user_version = 2;
"""
TXNS_IN_SCHEMA_1 = ("SELECT t.id, a.name AS account, t.amount FROM txns AS t "
                    "JOIN accounts AS a ON a.id = t.account_id")


def _reshape_and_write(live: Path) -> None:
    """Schema 1 -> 2 (account names into a table of their own), then a new payment."""
    conn = _db(live)
    conn.executescript(LEDGER_1_TO_2)
    conn.execute("INSERT INTO accounts (name) VALUES ('zed')")
    conn.execute("INSERT INTO txns (account_id, amount) VALUES "
                 "((SELECT id FROM accounts WHERE name = 'zed'), 77)")
    conn.close()


def test_rows_of_a_reshaped_table_are_carried_through_the_manifests_query(
        live: Path, tmp_path: Path) -> None:
    """A migration that moves a column into a table of its own: by column name, a new row
    cannot fit the old table (``account`` NOT NULL); the manifest's rollback_rows query
    says how it reads there, and every row written since comes back."""
    item, entry, store = _snapshot(live, tmp_path)
    _reshape_and_write(live)
    by_name = dict(item)
    how, report = host_store.restore_database(by_name, entry, store)
    assert how == "carried" and report["not_carried"] >= 1  # by name: refused and listed
    assert any("NOT NULL" in row["reason"] for row in report["listed"])

    item, entry, store = _snapshot(live, tmp_path / "again")  # schema 1 again; redo
    _reshape_and_write(live)
    item["rollback_rows"] = {"txns": TXNS_IN_SCHEMA_1, "accounts": None}
    how, report = host_store.restore_database(item, entry, store)
    assert how == "carried" and report["not_carried"] == 0, report["listed"]
    assert _rows(live)[-1] == (6, "zed", 77)
    assert report["tables"]["accounts"] == {"derived:not-carried": 6}


def test_a_broken_rollback_rows_query_lists_the_rows_and_restores(
        live: Path, tmp_path: Path) -> None:
    item, entry, store = _snapshot(live, tmp_path)
    item["rollback_rows"] = {"txns": "SELECT nonsense FROM nowhere"}
    _migrate_and_write(live)
    how, report = host_store.restore_database(item, entry, store)
    assert how == "carried"
    assert [r[0] for r in _rows(live)] == [1, 2, 3, 4, 5]
    assert any("rollback_rows query for txns failed" in r["reason"] for r in report["listed"])
