"""Copy a whole journal into another, empty one (``relctl journal migrate``).

Rows are copied table by table in the order the schema creates them (so every row a
foreign key names is there first), with their ids, in one transaction on the target:
a copy that fails leaves the target as empty as it was. Both journals are at the same
schema version (opening one migrates it), so the columns match. The copy is then
checked: every table holds as many rows in the target as in the source.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from controller.errors import InputError
from controller.journal.db import MIGRATIONS, JournalBase
from controller.journal.errors import JournalError, LockedError

if TYPE_CHECKING:
    from controller.journal.store import Journal

TABLE_ORDER: tuple[str, ...] = tuple(
    re.findall(r"CREATE TABLE (\w+)", " ".join(s for m in MIGRATIONS for s in m)))


@dataclass(frozen=True)
class CopyReport:
    """What a copy moved: rows per table, counted in the source and in the target."""

    source: str
    target: str
    counts: dict[str, tuple[int, int]]

    @property
    def rows(self) -> int:
        return sum(found for found, _ in self.counts.values())


class CopyLog(JournalBase):
    """Whole tables in and out, for copying a journal."""

    def row_counts(self) -> dict[str, int]:
        """How many rows each journal table holds, in schema order."""
        counts = {}
        for table in TABLE_ORDER:
            row = self._row(f"SELECT COUNT(*) AS n FROM {table}")
            counts[table] = int(row["n"]) if row is not None else 0
        return counts

    def copy_into(self, target: CopyLog) -> None:
        """Every row of every table into ``target``, in one transaction there."""
        with target._transaction() as db:
            for table in TABLE_ORDER:
                result = self._db.execute(f"SELECT * FROM {table}")
                columns = ", ".join(result.columns)
                marks = ", ".join("?" * len(result.columns))
                insert = f"INSERT INTO {table} ({columns}) VALUES ({marks})"
                for row in result.rows:
                    db.execute(insert, tuple(row[c] for c in result.columns))
                db.restart_ids(table)


def copy_journal(source: Journal, target: Journal) -> CopyReport:
    """Copy ``source`` into the empty ``target``; the counts of both.

    Refused (nothing copied) while a lock is held in the source (``LockedError``: a
    release runs; its lock would mean nothing in the target) or when the target holds
    rows (``InputError``). ``JournalError`` when a count differs after the copy."""
    held = [lock.environment for lock in source.locks()]
    if held:
        raise LockedError(f"{source.where} has locks held ({', '.join(held)}): a release "
                          "is running", hint="migrate once no release runs")
    present = {t: n for t, n in target.row_counts().items() if n}
    if present:
        raise InputError(f"the target journal {target.where} is not empty "
                         f"({', '.join(f'{t}: {n}' for t, n in present.items())})",
                         hint="migrate into a new, empty database")
    source.copy_into(target)
    before, after = source.row_counts(), target.row_counts()
    counts = {t: (before[t], after[t]) for t in TABLE_ORDER}
    wrong = [f"{t}: {a} of {b}" for t, (b, a) in counts.items() if a != b]
    if wrong:
        raise JournalError(f"the copy into {target.where} is incomplete: {', '.join(wrong)}")
    return CopyReport(source.where, target.where, counts)
