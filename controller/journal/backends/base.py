"""What every journal backend provides: statements, write transactions, the schema
version, and (where the database has them) session locks.

The journal's SQL is written once, in SQLite's spelling (``?`` placeholders, the
dialect both share otherwise); a backend translates what its database spells otherwise.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from controller.journal.records import Row

Params = Sequence[Any]


@dataclass(frozen=True)
class Result:
    """What a statement gave back: its rows (fetched at once), the rows it changed, and
    the names of its columns."""

    rows: list[Row]
    rowcount: int
    columns: tuple[str, ...] = ()

    def first(self) -> Row | None:
        """The first row, or None."""
        return self.rows[0] if self.rows else None


class SessionLocks(Protocol):
    """Locks owned by a database session: the server frees them when the session ends,
    whichever machine its client ran on and however it died."""

    def hold(self, key: int) -> bool:
        """Take the lock ``key`` for this session; False when another session has it."""

    def release(self, key: int) -> None:
        """Give up ``key`` if this session holds it."""

    def held(self, key: int) -> bool:
        """Whether any live session holds ``key``."""


class Database(ABC):
    """One connection to a journal database."""

    kind: ClassVar[str]

    def __init__(self, where: str) -> None:
        self.where = where  # for messages: a path, or a URL with its password masked

    @abstractmethod
    def execute(self, sql: str, params: Params = ()) -> Result:
        """Run one statement (in the open transaction, if any) and fetch its rows."""

    @abstractmethod
    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction, committed at the end, rolled back on an error."""
        yield

    def write(self, sql: str, params: Params = ()) -> Result:
        """One statement in its own committed write transaction."""
        with self.transaction():
            return self.execute(sql, params)

    @abstractmethod
    def close(self) -> None:
        """Close the connection (a session's locks go with it)."""

    # -- the schema ----------------------------------------------------------------------

    @abstractmethod
    def schema_version(self) -> int:
        """The journal schema version the database is at (0: none yet)."""

    @abstractmethod
    def set_schema_version(self, version: int) -> None:
        """Record the schema version (inside the migration's transaction)."""

    @abstractmethod
    def tables(self) -> set[str]:
        """The tables the database holds, besides the backend's own bookkeeping."""

    def ddl(self, statement: str) -> str:
        """A schema statement of ``db.MIGRATIONS`` in this database's spelling."""
        return statement

    def guard_migration(self) -> None:
        """Inside the migration's transaction: make concurrent migrations wait."""
        return None  # SQLite: BEGIN IMMEDIATE already serialises them

    def restart_ids(self, table: str) -> None:
        """After rows were copied in with their ids, make new ids follow the highest
        (SQLite's AUTOINCREMENT does it by itself)."""
        return None

    def session_locks(self) -> SessionLocks | None:
        """The database's session locks, or None when it has none (SQLite)."""
        return None
