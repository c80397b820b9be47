"""SQLite access shared by all versions: connections and schema checks."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from . import schema

BUSY_TIMEOUT_MS = 5000


class SchemaMismatchError(RuntimeError):
    """The database schema is not the one this release's code expects."""


def connect(path: Path, *, create: bool = False) -> sqlite3.Connection:
    """Open ``path`` (never creating it unless ``create``) with sane pragmas."""
    mode = "rwc" if create else "rw"
    uri = f"file:{quote(str(path))}?mode={mode}"
    conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def user_version(conn: sqlite3.Connection) -> int:
    """Schema version stored in the database header."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def is_blank(conn: sqlite3.Connection) -> bool:
    """True for a database with no schema at all (freshly created)."""
    tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    return user_version(conn) == 0 and tables == 0


def stored_schema(path: Path) -> int | None:
    """Schema version of the database at ``path``; None if absent or blank."""
    if not path.exists():
        return None
    conn = connect(path)
    try:
        return None if is_blank(conn) else user_version(conn)
    finally:
        conn.close()


def mismatch_message(path: Path, found: int) -> str:
    """Human-readable explanation of a schema mismatch."""
    return (
        f"database {path} is at schema {found} but this release expects "
        f"schema {schema.SCHEMA}; run this release's ledger-migrate to "
        "upgrade, or restore a backup to downgrade"
    )


def check_schema(conn: sqlite3.Connection, path: Path) -> None:
    """Raise SchemaMismatchError unless the database is at the expected schema."""
    found = user_version(conn)
    if found != schema.SCHEMA:
        raise SchemaMismatchError(mismatch_message(path, found))


def initialize(path: Path) -> bool:
    """Create the schema in a new database, else verify it. True if created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = connect(path, create=True)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("BEGIN IMMEDIATE")
        try:
            created = is_blank(conn)
            if created:
                schema.create(conn)
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        check_schema(conn, path)
        return created
    finally:
        conn.close()


@contextmanager
def session(path: Path) -> Iterator[sqlite3.Connection]:
    """One schema-checked connection and transaction (commit on success)."""
    conn = connect(path)
    try:
        check_schema(conn, path)
        with conn:
            yield conn
    finally:
        conn.close()
