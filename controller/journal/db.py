"""The journal's schema, its migrations, and what every part of the journal shares.

``MIGRATIONS[n]`` takes schema version n to n+1; every backend runs the same statements
(PostgreSQL in its own words for SQLite's column types: ``Database.ddl``) and records
the version its own way (``PRAGMA user_version``, a ``relctl_schema`` table). Where the
journal lives and how it is reached is ``controller.journal.backends``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from controller.journal.backends import Database, Result, open_database
from controller.journal.errors import JournalDatabaseError, JournalError, UnusableJournalError
from controller.journal.records import (
    CHILD_STATES,
    CONTINUITY_KINDS,
    GATE_KINDS,
    HOST_STATES,
    MONITOR_STATES,
    MONITOR_VERDICTS,
    PHASE_STATES,
    RELEASE_STATES,
    VERDICTS,
    EventRecord,
    Row,
)


def _one_of(column: str, values: tuple[str, ...]) -> str:
    quoted = ", ".join(f"'{v}'" for v in values)
    return f"CHECK ({column} IN ({quoted}))"


SCHEMA_V1 = (
    f"""CREATE TABLE releases (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL, version TEXT NOT NULL,
        service TEXT NOT NULL, environment TEXT NOT NULL,
        manifest_path TEXT NOT NULL, manifest_sha256 TEXT NOT NULL,
        state TEXT NOT NULL {_one_of("state", RELEASE_STATES)},
        bad INTEGER NOT NULL DEFAULT 0 CHECK (bad IN (0, 1)),
        started TEXT NOT NULL, ended TEXT,
        operator_user TEXT NOT NULL, operator_host TEXT NOT NULL,
        operator_pid INTEGER NOT NULL, operator_started REAL NOT NULL,
        exit_code INTEGER, message TEXT)""",
    "CREATE INDEX releases_by_scope ON releases (service, environment, state, bad)",
    "CREATE INDEX releases_by_name ON releases (name)",
    f"""CREATE TABLE phases (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        release_id INTEGER NOT NULL REFERENCES releases (id),
        name TEXT NOT NULL,
        state TEXT NOT NULL {_one_of("state", PHASE_STATES)},
        started TEXT NOT NULL, ended TEXT, seconds REAL,
        detail TEXT NOT NULL DEFAULT '{{}}')""",
    "CREATE INDEX phases_by_release ON phases (release_id)",
    f"""CREATE TABLE host_states (
        release_id INTEGER NOT NULL REFERENCES releases (id),
        host TEXT NOT NULL,
        state TEXT NOT NULL {_one_of("state", HOST_STATES)},
        version_before TEXT, version_after TEXT,
        updated TEXT NOT NULL,
        PRIMARY KEY (release_id, host))""",
    """CREATE TABLE snapshots (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        release_id INTEGER NOT NULL REFERENCES releases (id),
        host TEXT NOT NULL, item TEXT NOT NULL, kind TEXT NOT NULL,
        path TEXT NOT NULL, sha256 TEXT NOT NULL, bytes INTEGER NOT NULL,
        meta TEXT NOT NULL DEFAULT '{}',
        verified INTEGER NOT NULL DEFAULT 0 CHECK (verified IN (0, 1)),
        created TEXT NOT NULL,
        UNIQUE (release_id, host, item))""",
    f"""CREATE TABLE gate_results (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        release_id INTEGER NOT NULL REFERENCES releases (id),
        phase TEXT NOT NULL,
        kind TEXT NOT NULL {_one_of("kind", GATE_KINDS)},
        verdict TEXT NOT NULL {_one_of("verdict", VERDICTS)},
        figures TEXT NOT NULL DEFAULT '{{}}', junit TEXT,
        created TEXT NOT NULL)""",
    "CREATE INDEX gate_results_by_release ON gate_results (release_id)",
    """CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        release_id INTEGER REFERENCES releases (id),
        time TEXT NOT NULL, message TEXT NOT NULL)""",
    "CREATE INDEX events_by_release ON events (release_id)",
    """CREATE TABLE locks (
        environment TEXT PRIMARY KEY,
        release TEXT NOT NULL,
        holder_user TEXT NOT NULL, holder_host TEXT NOT NULL,
        holder_pid INTEGER NOT NULL, holder_started REAL NOT NULL,
        acquired TEXT NOT NULL)""",
    """CREATE TABLE signoffs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        release TEXT NOT NULL, role TEXT NOT NULL, signed_by TEXT NOT NULL,
        note TEXT NOT NULL DEFAULT '', time TEXT NOT NULL)""",
    "CREATE INDEX signoffs_by_release ON signoffs (release)",
)

SCHEMA_V2 = (
    # Business continuity: replications (what RPO is measured against), failovers,
    # failbacks and drills, with their figures and, for drills, the report.
    f"""CREATE TABLE continuity (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL {_one_of("kind", CONTINUITY_KINDS)},
        service TEXT NOT NULL, environment TEXT NOT NULL,
        state TEXT NOT NULL {_one_of("state", PHASE_STATES)},
        started TEXT NOT NULL, ended TEXT,
        operator_user TEXT NOT NULL, operator_host TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT '{{}}', report TEXT)""",
    "CREATE INDEX continuity_by_scope ON continuity (service, environment, kind, state)",
)

SCHEMA_V3 = (
    # Warranty monitoring: one row per monitor run of a released release (who runs it,
    # its settings, how it ended, a summary), and one per round (written when it starts
    # with no verdict, and again when it ends).
    f"""CREATE TABLE monitors (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        release_id INTEGER NOT NULL REFERENCES releases (id),
        state TEXT NOT NULL {_one_of("state", MONITOR_STATES)},
        started TEXT NOT NULL, ended TEXT,
        settings TEXT NOT NULL DEFAULT '{{}}',
        operator_user TEXT NOT NULL, operator_host TEXT NOT NULL,
        operator_pid INTEGER NOT NULL, operator_started REAL NOT NULL,
        exit_code INTEGER, message TEXT,
        summary TEXT NOT NULL DEFAULT '{{}}')""",
    "CREATE INDEX monitors_by_release ON monitors (release_id, state)",
    f"""CREATE TABLE monitor_rounds (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        monitor_id INTEGER NOT NULL REFERENCES monitors (id),
        release_id INTEGER NOT NULL REFERENCES releases (id),
        round INTEGER NOT NULL,
        started TEXT NOT NULL, ended TEXT,
        verdict TEXT {_one_of("verdict", MONITOR_VERDICTS)},
        detail TEXT NOT NULL DEFAULT '{{}}',
        UNIQUE (monitor_id, round))""",
    "CREATE INDEX monitor_rounds_by_release ON monitor_rounds (release_id)",
)

SCHEMA_V4 = (
    # When and why a release went bad (apply refuses it unless --force); rows marked bad
    # before keep NULLs, and their end time and message stand in.
    "ALTER TABLE releases ADD COLUMN bad_since TEXT",
    "ALTER TABLE releases ADD COLUMN bad_reason TEXT",
    # A sign-off approves one manifest text (sha256) for one environment; older rows keep
    # NULLs: still listed, but they approve nothing any more.
    "ALTER TABLE signoffs ADD COLUMN environment TEXT",
    "ALTER TABLE signoffs ADD COLUMN manifest_path TEXT",
    "ALTER TABLE signoffs ADD COLUMN manifest_sha256 TEXT",
    # What apply waits to have signed: `relctl signoff` without --manifest signs it.
    """CREATE TABLE signoff_requests (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        release TEXT NOT NULL, environment TEXT NOT NULL,
        manifest_path TEXT NOT NULL, manifest_sha256 TEXT NOT NULL,
        time TEXT NOT NULL)""",
    "CREATE INDEX signoff_requests_by_release ON signoff_requests (release)",
)

SCHEMA_V5 = (
    # Every process relctl starts (ansible-playbook, pytest, Locust): written before it
    # starts, with the file its launcher writes its pid and create time into before any
    # work, so `resume` and `unlock` can stop what a dead controller left (by pid, never
    # by name). `owner_*` is the controller that started it.
    f"""CREATE TABLE children (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        release_id INTEGER REFERENCES releases (id),
        label TEXT NOT NULL, program TEXT NOT NULL,
        host TEXT NOT NULL, owner_pid INTEGER NOT NULL, owner_started REAL NOT NULL,
        record TEXT NOT NULL,
        pid INTEGER, started REAL,
        state TEXT NOT NULL {_one_of("state", CHILD_STATES)},
        created TEXT NOT NULL, ended TEXT, exit_code INTEGER)""",
    "CREATE INDEX children_by_owner ON children (host, owner_pid, state)",
    "CREATE INDEX children_by_release ON children (release_id, state)",
)

SCHEMA_V6 = (
    # Snapshots are content-addressed objects shared across hosts and releases, kept for
    # the releases retention keeps: when retention drops a snapshot its rows stay (the
    # history) with the time it was dropped; a dropped snapshot cannot be restored.
    "ALTER TABLE snapshots ADD COLUMN pruned TEXT",
)

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4, SCHEMA_V5, SCHEMA_V6,
)
SCHEMA_VERSION = len(MIGRATIONS)
TABLES = frozenset(re.findall(r"CREATE TABLE (\w+)", " ".join(s for m in MIGRATIONS for s in m)))


def utcnow() -> datetime:
    """The current time in UTC."""
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """How the journal stores a time: ISO-8601 in UTC, to the microsecond."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def migrate(db: Database) -> int:
    """Bring the schema up to ``SCHEMA_VERSION``; returns the version found before.

    ``UnusableJournalError`` (exit 2) for a database that holds tables but no relctl
    journal; ``JournalError`` for a journal newer than this relctl."""
    try:
        with db.transaction():
            db.guard_migration()
            found = db.schema_version()
            _check_found(found, db.tables())
            for statements in MIGRATIONS[found:]:
                for statement in statements:
                    db.execute(db.ddl(statement))
            if found != SCHEMA_VERSION:
                db.set_schema_version(SCHEMA_VERSION)
        _check_tables(db.tables())
    except JournalDatabaseError as error:
        raise UnusableJournalError(f"cannot use the journal {db.where}: {error.message}") from error
    return found


def _check_found(found: int, tables: set[str]) -> None:
    if found > SCHEMA_VERSION:
        raise JournalError(
            f"the journal has schema version {found}; this relctl knows up to "
            f"{SCHEMA_VERSION}", hint="upgrade relctl, or use another --state-dir")
    if found == 0 and tables:
        raise UnusableJournalError("a database, but not a relctl journal "
                                   f"(it holds {', '.join(sorted(tables)[:5])})")


def _check_tables(found: set[str]) -> None:
    missing = sorted(TABLES - found)
    if missing:
        raise UnusableJournalError(f"not a relctl journal: no table {', '.join(missing)}")


class JournalBase:
    """The database connection and the small helpers every part of the journal shares.

    ``target`` is a path (SQLite) or a journal URL (``postgresql://…``); messages name
    it by ``where``, with a URL's password masked."""

    def __init__(self, target: str | Path, *, clock: Callable[[], datetime] = utcnow,
                 busy_timeout_s: float = 10.0) -> None:
        self.target = target
        self._clock = clock
        self._db = open_database(target, busy_timeout_s)
        try:
            migrate(self._db)
        except BaseException:
            self._db.close()
            raise

    @property
    def where(self) -> str:
        """The journal's path, or its URL with the password masked."""
        return self._db.where

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._db.kind

    def schema_version(self) -> int:
        """The schema version the journal is at (``SCHEMA_VERSION`` once opened)."""
        return self._db.schema_version()

    def close(self) -> None:
        """Close the connection (on PostgreSQL, the session's locks go with it)."""
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def _now(self) -> str:
        return iso(self._clock())

    @contextmanager
    def _transaction(self) -> Iterator[Database]:
        """Several statements in one write transaction (``self._db.execute`` inside)."""
        with self._db.transaction():
            yield self._db

    def _write(self, sql: str, params: tuple[Any, ...] = ()) -> Result:
        """One statement in its own committed transaction."""
        return self._db.write(sql, params)

    def _insert(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        """One ``INSERT`` in its own committed transaction; the new row's id (0: none)."""
        row = self._db.write(sql + " RETURNING id", params).first()
        return int(row["id"]) if row is not None else 0

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[Row]:
        return self._db.execute(sql, params).rows

    def _row(self, sql: str, params: tuple[Any, ...] = ()) -> Row | None:
        return self._db.execute(sql, params).first()

    def log(self, release_id: int | None, message: str) -> int:
        """Append a line to the event log (of a release, or general when None)."""
        return self._insert("INSERT INTO events (release_id, time, message) VALUES (?, ?, ?)",
                            (release_id, self._now(), message))

    def events(self, release_id: int | None = None, limit: int = 1000) -> list[EventRecord]:
        """Event lines, oldest first: of one release, or every one when None."""
        rows = self._rows(
            "SELECT * FROM (SELECT * FROM events WHERE (? IS NULL OR release_id = ?)"
            " ORDER BY id DESC LIMIT ?) AS latest ORDER BY id",
            (release_id, release_id, limit),
        )
        return [EventRecord.from_row(r) for r in rows]
