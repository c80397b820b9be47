"""Where the journal lives: an SQLite file, or a PostgreSQL database shared by controllers.

    open_database(target)        a path or ``sqlite:PATH``    -> SqliteDatabase
                                 ``postgresql://…``           -> PostgresDatabase

**Why a DB-API seam and not SQLAlchemy Core.** The journal is about forty short
statements that both dialects already agree on (``INSERT … ON CONFLICT``, ``RETURNING``,
``COALESCE``, ``LIMIT``), written once in the journal's modules. What differs is small
and mechanical: the placeholder (``?`` / ``%s``), three DDL words (``AUTOINCREMENT``,
``INTEGER``, ``REAL``), where the schema version is kept (``PRAGMA user_version`` / a
``relctl_schema`` table), how a write transaction starts, and session locks, which only
PostgreSQL has. A ``Database`` subclass per backend carries exactly that (a dozen
methods, in the spirit of testinfra's backends), over the drivers' own DB-API
connections. SQLAlchemy would add a dependency and a query language for no statement the
journal needs, and would hide the one thing that must stay visible: which connection
holds a lock's advisory lock.

Only ``postgresql.py`` imports ``psycopg``, and only when a PostgreSQL URL is opened.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from controller.journal.backends.base import Database, Result, SessionLocks
from controller.journal.backends.sqlite import SqliteDatabase
from controller.journal.errors import UnusableJournalError
from controller.journal.locations import SQLITE_PREFIX, mask_url, split_target

Opener = Callable[[str, float], Database]


def _open_sqlite(where: str, busy_timeout_s: float) -> Database:
    return SqliteDatabase(Path(where), busy_timeout_s)


def _open_postgres(url: str, busy_timeout_s: float) -> Database:
    from controller.journal.backends.postgresql import PostgresDatabase  # noqa: PLC0415 - psycopg only when used

    return PostgresDatabase(url, busy_timeout_s)


BACKENDS: dict[str, Opener] = {
    "sqlite": _open_sqlite,
    "postgresql": _open_postgres,
    "postgres": _open_postgres,
}


def open_database(target: str | Path, busy_timeout_s: float = 10.0) -> Database:
    """Connect to the journal ``target`` names (not migrated: see ``db.migrate``).

    ``UnusableJournalError`` (exit 2) for a kind relctl does not know;
    ``JournalUnreachableError`` (exit 7) when a database server cannot be reached."""
    kind, where = split_target(target)
    opener = BACKENDS.get(kind)
    if opener is None:
        raise UnusableJournalError(
            f"unknown journal kind {kind!r} in {mask_url(str(target))}",
            hint=f"use a path, {SQLITE_PREFIX}PATH or postgresql://USER:PASSWORD@HOST/DB")
    return opener(where, busy_timeout_s)


__all__ = ["BACKENDS", "Database", "Result", "SessionLocks", "open_database"]
