"""The processes relctl starts, recorded before they start and closed when they end."""

from __future__ import annotations

from pathlib import Path

from controller.journal.db import JournalBase
from controller.journal.records import ChildRecord, ChildState, Holder


class ChildLog(JournalBase):
    """Record, update and find the children of a controller (``children`` table)."""

    def add_child(self, release_id: int | None, label: str, program: str, record: Path,
                  owner: Holder) -> int:
        """Record a child about to start (state ``starting``); returns its id."""
        return self._insert(
            "INSERT INTO children (release_id, label, program, host, owner_pid, owner_started,"
            " record, state, created) VALUES (?, ?, ?, ?, ?, ?, ?, 'starting', ?)",
            (release_id, label, program, owner.host, owner.pid, owner.started, str(record),
             self._now()))

    def child_running(self, child_id: int, pid: int, started: float) -> None:
        """The child's launcher runs as ``pid``, created at ``started``."""
        self._write("UPDATE children SET pid = ?, started = ?, state = 'running' WHERE id = ?",
                    (pid, started, child_id))

    def child_ended(self, child_id: int, state: ChildState = "ended",
                    exit_code: int | None = None) -> None:
        """The child ended by itself (``ended``) or was stopped by relctl (``stopped``)."""
        self._write("UPDATE children SET state = ?, exit_code = ?, ended = ? WHERE id = ?",
                    (state, exit_code, self._now(), child_id))

    def open_children(self, *, release_id: int | None = None,
                      owner: Holder | None = None) -> list[ChildRecord]:
        """Children not known to have ended: of one release, or of one controller."""
        rows = self._rows(
            "SELECT * FROM children WHERE state IN ('starting', 'running')"
            " AND (? IS NULL OR release_id = ?)"
            " AND (? IS NULL OR (host = ? AND owner_pid = ? AND owner_started = ?))"
            " ORDER BY id",
            (release_id, release_id, owner and owner.pid, owner and owner.host,
             owner and owner.pid, owner and owner.started))
        return [ChildRecord.from_row(r) for r in rows]

    def children(self, release_id: int) -> list[ChildRecord]:
        """Every child of one release, oldest first."""
        return [ChildRecord.from_row(r) for r in
                self._rows("SELECT * FROM children WHERE release_id = ? ORDER BY id",
                           (release_id,))]
