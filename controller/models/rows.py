"""Rows of a database as data: what the failback's catch-up and the rollback's report
compare. Shared by ``planning/`` (which decides) and ``data/`` (which reads servers), so
neither imports the other."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Row = tuple[Any, ...]


@dataclass(frozen=True)
class TableRows:
    """The rows of one table of a database, with its column names."""

    columns: list[str]
    rows: list[Row]


@dataclass(frozen=True)
class CatchUp:
    """What the two sites disagree on, per table, after a failover."""

    missing_on_backup: dict[str, list[dict[str, Any]]]  # re-enter these
    only_on_backup: dict[str, list[dict[str, Any]]]  # written during the outage
    after_replication: dict[str, int]  # rows the old primary got after the last replica

    @property
    def total_missing(self) -> int:
        return sum(len(rows) for rows in self.missing_on_backup.values())
