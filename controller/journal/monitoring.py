"""Warranty monitors and their rounds.

A monitor is claimed (one live monitor per release: a second one would double the probe
load and race the first to a rollback), each round is written when it starts and again
when it ends, and the monitor's end stamps its state, exit code and summary.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controller.journal.db import JournalBase
from controller.journal.errors import LockedError
from controller.journal.identity import current_holder, liveness
from controller.journal.records import (
    Holder,
    MonitorRecord,
    MonitorRoundRecord,
    MonitorState,
    MonitorVerdict,
)
from controller.journal.redaction import to_json


class MonitorLog(JournalBase):
    """The monitors and monitor_rounds tables of the journal."""

    def claim_monitor(self, release_id: int, settings: Mapping[str, Any],
                      holder: Holder | None = None) -> int:
        """Start a monitor of ``release_id``; its id. ``LockedError`` when another one
        still runs (a monitor whose process died is marked ``stopped`` first)."""
        who = holder or current_holder()
        with self._transaction() as db:
            for row in db.execute(
                    "SELECT * FROM monitors WHERE release_id = ? AND state = 'running'",
                    (release_id,)).rows:
                other = MonitorRecord.from_row(row)
                if liveness(other.operator) != "gone":
                    raise LockedError(
                        f"monitor #{other.id} of this release already runs: {other.operator}",
                        hint="stop it first, or wait for it to end")
                db.execute(
                    "UPDATE monitors SET state = 'stopped', ended = ?, message = ? WHERE id = ?",
                    (self._now(), "its process died", other.id))
            created = db.execute(
                "INSERT INTO monitors (release_id, state, started, settings, operator_user,"
                " operator_host, operator_pid, operator_started)"
                " VALUES (?, 'running', ?, ?, ?, ?, ?, ?) RETURNING id",
                (release_id, self._now(), to_json(settings), who.user, who.host, who.pid,
                 who.started)).first()
        return int(created["id"]) if created is not None else 0

    def end_monitor(self, monitor_id: int, state: MonitorState, *, exit_code: int,
                    message: str, summary: Mapping[str, Any] | None = None) -> MonitorRecord:
        """Record how a monitor ended, with its summary."""
        if state == "running":
            raise ValueError("a monitor ends in a final state, not running")
        self._write("UPDATE monitors SET state = ?, ended = ?, exit_code = ?, message = ?,"
                    " summary = ? WHERE id = ?",
                    (state, self._now(), exit_code, message, to_json(summary), monitor_id))
        return self.monitor(monitor_id)

    def monitor(self, monitor_id: int) -> MonitorRecord:
        """One monitor by id; ``KeyError`` when there is none."""
        row = self._row("SELECT * FROM monitors WHERE id = ?", (monitor_id,))
        if row is None:
            raise KeyError(monitor_id)
        return MonitorRecord.from_row(row)

    def monitors(self, release_id: int | None = None, *, state: MonitorState | None = None,
                 limit: int = 50) -> list[MonitorRecord]:
        """Monitors, newest first: of one release and in one state, when given."""
        rows = self._rows(
            "SELECT * FROM monitors WHERE (? IS NULL OR release_id = ?)"
            " AND (? IS NULL OR state = ?) ORDER BY id DESC LIMIT ?",
            (release_id, release_id, state, state, limit))
        return [MonitorRecord.from_row(r) for r in rows]

    def begin_round(self, monitor_id: int, number: int) -> int:
        """Record that round ``number`` of a monitor starts now; its id."""
        round_id = self._insert(
            "INSERT INTO monitor_rounds (monitor_id, release_id, round, started)"
            " SELECT id, release_id, ?, ? FROM monitors WHERE id = ?",
            (number, self._now(), monitor_id))
        if not round_id:
            raise KeyError(monitor_id)
        return round_id

    def end_round(self, round_id: int, verdict: MonitorVerdict,
                  detail: Mapping[str, Any] | None = None) -> MonitorRoundRecord:
        """Record a round's verdict and what it measured."""
        self._write("UPDATE monitor_rounds SET ended = ?, verdict = ?, detail = ? WHERE id = ?",
                    (self._now(), verdict, to_json(detail), round_id))
        row = self._row("SELECT * FROM monitor_rounds WHERE id = ?", (round_id,))
        if row is None:
            raise KeyError(round_id)
        return MonitorRoundRecord.from_row(row)

    def monitor_rounds(self, release_id: int | None = None, *,
                       monitor_id: int | None = None) -> list[MonitorRoundRecord]:
        """Rounds in the order they ran: of one release and/or one monitor."""
        rows = self._rows(
            "SELECT * FROM monitor_rounds WHERE (? IS NULL OR release_id = ?)"
            " AND (? IS NULL OR monitor_id = ?) ORDER BY id",
            (release_id, release_id, monitor_id, monitor_id))
        return [MonitorRoundRecord.from_row(r) for r in rows]
