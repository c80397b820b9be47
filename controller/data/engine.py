"""The seam every data engine fills (``controller/data/__init__.py`` picks one by name)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from controller.errors import RelctlError

LISTED_MAX = 200
"""Rows listed per data item in a rollback's report (every one is counted)."""


class DataRestoreError(RelctlError):
    """A restore (or the carry-forward in it) could not complete: it ran in one
    transaction, so the database is as it was before it started."""


@dataclass(frozen=True)
class Capture:
    """A consistent dump of one data item, and what it holds."""

    dump: Path
    digest: str  # the logical digest of exactly what the dump holds
    server_version: str
    seconds: float
    schema: str = ""  # the digest of the schema alone (a rollback keeps data it did not migrate)
    rows: str = ""  # the digest of the rows and sequences alone (checked inside a restore)


@dataclass(frozen=True)
class CarryRequest:
    """What a rollback does with the rows written since the snapshot, in the restore's
    transaction: carry them into the restored snapshot, or (``discard``) list and drop."""

    discard: bool = False
    # the manifest's rollback_rows: old table -> SELECT over the new schema giving its rows
    # in the old columns (run read-only); None: a table of the new schema that is derived
    queries: Mapping[str, str | None] = field(default_factory=dict)
    rows_digest: str = ""  # the snapshot's rows digest: the restore is checked against it


@dataclass(frozen=True)
class CarryReport:
    """What a restore did with the rows written since the snapshot (the shape the host
    agent reports for SQLite: ``tables`` counts per ``op:outcome``, ``listed`` rows)."""

    tables: dict[str, dict[str, int]]  # table -> "insert:carried" (etc.) -> rows
    listed: list[dict[str, Any]]  # at most LISTED_MAX rows: table, op, row, reason
    not_carried: int
    sequences: dict[str, int]  # sequence -> the value it was moved up to (ids never reused)
    locked_s: float  # how long the database refused writes (its tables locked)


class DataEngine(Protocol):
    """One data item's engine, run by the controller against the item's server."""

    def check(self) -> str:
        """Log in and return the server's version; raise a clear error naming the item
        (``InputError`` bad credentials or database, ``DataUnreachableError`` no server,
        ``PrerequisiteError`` no client tools) before anything is touched."""
        ...

    def capture(self, folder: Path) -> Capture:
        """Dump the data into ``folder`` with the logical digest of the same snapshot."""
        ...

    def restore(self, dump: Path) -> None:
        """Put the dumped data back in one transaction: nothing else survives it."""
        ...

    def roll_back(self, dump: Path, carry: CarryRequest) -> CarryReport:
        """Put the dumped data back and carry into it (or drop) the rows written since,
        all in one transaction that holds off every other writer; ``DataRestoreError``
        (nothing changed) when it cannot."""
        ...

    def digest(self) -> str:
        """The logical digest of the data now (schema, rows, sequences)."""
        ...

    def schema_digest(self) -> str:
        """The digest of the schema now (tables, columns, constraints; no rows)."""
        ...

    def digests(self) -> tuple[str, str]:
        """``digest()`` and ``schema_digest()`` of one snapshot of the data."""
        ...
