"""The seam every data engine fills (``controller/data/__init__.py`` picks one by name)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class Capture:
    """A consistent dump of one data item, and what it holds."""

    dump: Path
    digest: str  # the logical digest of exactly what the dump holds
    server_version: str
    seconds: float
    schema: str = ""  # the digest of the schema alone (a rollback keeps data it did not migrate)


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

    def digest(self) -> str:
        """The logical digest of the data now (schema, rows, sequences)."""
        ...

    def schema_digest(self) -> str:
        """The digest of the schema now (tables, columns, constraints; no rows)."""
        ...
