"""The embedded journal: one SQLite file on the controller.

WAL mode lets readers (``relctl history``) run beside a writing release; ``busy_timeout``
makes concurrent writers wait for each other instead of failing; ``synchronous=FULL``
and a commit after every write mean a step written is a step that survives a crash.
The schema version is ``PRAGMA user_version``. SQLite has no session locks: a lock's
holder is alive while its process runs, which only its own machine can see.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from controller.errors import InputError
from controller.journal.backends.base import Database, Params, Result
from controller.journal.errors import JournalDatabaseError, UnusableJournalError


class SqliteDatabase(Database):
    """A journal file, opened (and created when missing)."""

    kind = "sqlite"

    def __init__(self, path: Path, busy_timeout_s: float = 10.0) -> None:
        """``UnusableJournalError`` (exit 2) when ``path`` is not a regular file, cannot be
        created, or is not SQLite: nothing is written to it then."""
        super().__init__(str(path))
        try:
            _check_regular(path)
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            _create_private(path)
            self._conn = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None)
        except (OSError, ValueError, sqlite3.Error) as error:
            raise UnusableJournalError(f"cannot open the journal {path}: {error}") from error
        self._conn.row_factory = sqlite3.Row
        try:
            _configure(self._conn, busy_timeout_s)
        except sqlite3.Error as error:
            self._conn.close()
            raise UnusableJournalError(f"cannot use the journal {path}: {error}") from error

    def execute(self, sql: str, params: Params = ()) -> Result:
        with self._refused():
            cursor = self._conn.execute(sql, tuple(params))
            rows = cursor.fetchall() if cursor.description else []
            columns = tuple(c[0] for c in cursor.description or ())
        return Result(rows, cursor.rowcount, columns)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Taken at once (``BEGIN IMMEDIATE``), so writers queue instead of failing."""
        self.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.execute("ROLLBACK")
            raise
        self.execute("COMMIT")

    def close(self) -> None:
        self._conn.close()

    def schema_version(self) -> int:
        row = self.execute("PRAGMA user_version").first()
        return int(row["user_version"]) if row is not None else 0

    def set_schema_version(self, version: int) -> None:
        self.execute(f"PRAGMA user_version = {int(version)}")

    def tables(self) -> set[str]:
        rows = self.execute("SELECT name FROM sqlite_master WHERE type = 'table'").rows
        return {r["name"] for r in rows if not r["name"].startswith("sqlite_")}

    @contextmanager
    def _refused(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as error:
            raise JournalDatabaseError(
                f"the journal {self.where} refused a statement: {error}") from error
        except OverflowError as error:  # a number past 64 bits, from input not checked
            raise InputError(f"a number too large for the journal {self.where}: {error}"
                             ) from error


def _check_regular(path: Path) -> None:
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        raise UnusableJournalError(f"the journal {path} is not a regular file")


def _create_private(path: Path) -> None:
    """A new journal file is 0600 (its -wal and -shm files take its mode): it holds the
    releases' events. An existing one is left as its owner made it, but for what anyone
    may read: a journal is never for everybody."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        info = os.stat(path)
        if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) & 0o007:
            with suppress(OSError):  # a journal on read-only media is still read
                os.chmod(path, stat.S_IMODE(info.st_mode) & ~0o007)
        return
    os.close(fd)


def _configure(conn: sqlite3.Connection, busy_timeout_s: float) -> None:
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
