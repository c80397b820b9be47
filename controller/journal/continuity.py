"""Continuity records: replications, failovers, failbacks and drills.

Like release steps, each is written when it starts (state ``running``) and again when it
ends, so a controller killed mid-failover leaves a record saying so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controller.journal.db import JournalBase
from controller.journal.identity import current_holder, liveness
from controller.journal.records import ContinuityKind, ContinuityRecord, Holder, PhaseState
from controller.journal.redaction import to_json


class ContinuityLog(JournalBase):
    """The continuity table of the journal."""

    def begin_continuity(self, kind: ContinuityKind, service: str, environment: str,
                         detail: Mapping[str, Any] | None = None) -> int:
        """Record that a replication/failover/failback/drill starts now; returns its id."""
        holder = current_holder()
        owner = {"owner": {"user": holder.user, "host": holder.host, "pid": holder.pid,
                           "started": holder.started}}
        return self._insert(
            "INSERT INTO continuity (kind, service, environment, state, started,"
            " operator_user, operator_host, detail) VALUES (?, ?, ?, 'running', ?, ?, ?, ?)",
            (kind, service, environment, self._now(), holder.user, holder.host,
             to_json({**owner, **(detail or {})})))

    def settle_abandoned(self) -> list[int]:
        """Mark ``failed`` every running record whose controller, on this machine, is
        gone (killed mid-replication, mid-failover): a record never says "running" for
        good. Returns their ids; records of other machines' controllers stay as they are."""
        settled = []
        for record in self.continuity_records(state="running", limit=200):
            owner = record.detail.get("owner")
            if not isinstance(owner, dict):
                continue
            holder = Holder(str(owner.get("user", "")), str(owner.get("host", "")),
                            int(owner.get("pid", 0)), float(owner.get("started", 0)))
            if liveness(holder) == "gone":
                self.end_continuity(record.id, "failed", {"problems": [
                    *record.detail.get("problems", []),
                    f"its controller ({holder}) stopped before it ended"]})
                settled.append(record.id)
        return settled

    def end_continuity(self, record_id: int, state: PhaseState,
                       detail: Mapping[str, Any] | None = None,
                       report: str | None = None) -> ContinuityRecord:
        """Record how it ended, with its figures (merged into the detail) and report."""
        merged = {**self.continuity_record(record_id).detail, **(detail or {})}
        self._write("UPDATE continuity SET state = ?, ended = ?, detail = ?,"
                    " report = COALESCE(?, report) WHERE id = ?",
                    (state, self._now(), to_json(merged), report, record_id))
        return self.continuity_record(record_id)

    def update_continuity(self, record_id: int, detail: Mapping[str, Any]) -> None:
        """Merge ``detail`` into a record's detail now, whatever its state (a drill
        journals each fault before it injects it)."""
        merged = {**self.continuity_record(record_id).detail, **detail}
        self._write("UPDATE continuity SET detail = ? WHERE id = ?", (to_json(merged), record_id))

    def continuity_record(self, record_id: int) -> ContinuityRecord:
        """One record by id; ``KeyError`` when there is none."""
        row = self._row("SELECT * FROM continuity WHERE id = ?", (record_id,))
        if row is None:
            raise KeyError(record_id)
        return ContinuityRecord.from_row(row)

    def continuity_records(self, kind: ContinuityKind | None = None, *,
                           service: str | None = None, environment: str | None = None,
                           state: PhaseState | None = None,
                           limit: int = 50) -> list[ContinuityRecord]:
        """Newest first, filtered by kind, scope and state."""
        rows = self._rows(
            "SELECT * FROM continuity WHERE (? IS NULL OR kind = ?)"
            " AND (? IS NULL OR service = ?) AND (? IS NULL OR environment = ?)"
            " AND (? IS NULL OR state = ?) ORDER BY id DESC LIMIT ?",
            (kind, kind, service, service, environment, environment, state, state, limit))
        return [ContinuityRecord.from_row(r) for r in rows]

    def last_replication(self, service: str, environment: str) -> ContinuityRecord | None:
        """The newest successful replication: what a failover restores, what RPO counts from."""
        found = self.continuity_records("replication", service=service,
                                        environment=environment, state="ok", limit=1)
        return found[0] if found else None
