"""Database access shared by all versions: connections and schema checks.

``db`` in the config is a SQLite file, or a ``postgresql://`` URL (``pg.py``): every
function here takes either.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from . import pg, schema

Target = Path | str  # a SQLite file, or a postgresql:// URL

BUSY_TIMEOUT_MS = 5000


class SchemaMismatchError(RuntimeError):
    """The database schema is not the one this release's code expects."""


def is_server(target: Target) -> bool:
    """True for a database server's URL (PostgreSQL mode)."""
    return isinstance(target, str) and target.startswith("postgresql://")


def connect(path: Target, *, create: bool = False) -> Any:
    """Open ``path`` (never creating it unless ``create``) with sane pragmas."""
    if is_server(path):
        return pg.Connection(str(path))
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


def stored_schema(path: Target) -> int | None:
    """Schema version of the database at ``path``; None if absent or blank."""
    if not is_server(path) and not Path(path).exists():
        return None
    conn = connect(path)
    try:
        return None if is_blank(conn) else user_version(conn)
    finally:
        conn.close()


def mismatch_message(path: Target, found: int) -> str:
    """Human-readable explanation of a schema mismatch."""
    return (
        f"database {path} is at schema {found} but this release expects "
        f"schema {schema.SCHEMA}; run this release's ledger-migrate to "
        "upgrade, or restore a backup to downgrade"
    )


def check_schema(conn: sqlite3.Connection, path: Target) -> None:
    """Raise SchemaMismatchError unless the database is at the expected schema."""
    found = user_version(conn)
    if found != schema.SCHEMA:
        raise SchemaMismatchError(mismatch_message(path, found))


def initialize(path: Target) -> bool:
    """Create the schema in a new database, else verify it. True if created."""
    if not is_server(path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
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
def session(path: Target) -> Iterator[sqlite3.Connection]:
    """One schema-checked connection and transaction (commit on success)."""
    conn = connect(path)
    try:
        check_schema(conn, path)
        with conn:
            yield conn
    finally:
        conn.close()
