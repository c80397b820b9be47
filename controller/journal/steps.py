"""What happens inside a release: phases, host states, snapshots, gate verdicts.

Every detail, meta and figures mapping is passed through ``redact`` before it is stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from controller.journal.db import JournalBase, iso
from controller.journal.errors import JournalError
from controller.journal.records import (
    GateKind,
    GateRecord,
    HostState,
    HostStateRecord,
    PhaseRecord,
    PhaseState,
    ReleaseRecord,
    SnapshotRecord,
    Verdict,
)
from controller.journal.redaction import to_json

Detail = Mapping[str, Any] | None


class StepLog(JournalBase):
    """Phases, host states, snapshots and gate results of releases."""

    def begin_phase(self, release_id: int, name: str, detail: Detail = None) -> int:
        """Record that phase ``name`` starts now (before doing it); returns its id."""
        return self._insert(
            "INSERT INTO phases (release_id, name, state, started, detail)"
            " VALUES (?, ?, 'running', ?, ?)",
            (release_id, name, self._now(), to_json(detail)),
        )

    def end_phase(self, phase_id: int, state: PhaseState, detail: Detail = None,
                  seconds: float | None = None) -> PhaseRecord:
        """Record how a phase ended; ``detail`` (if given) replaces the stored one.

        ``seconds`` is the phase's duration as its process measured it (monotonic clock);
        without it, the difference of the stored wall-clock times stands in."""
        if state == "running":
            raise ValueError("a phase ends ok, failed or skipped, not running")
        phase, moment = self.phase(phase_id), self._clock()
        if seconds is None:
            seconds = max((moment - phase.started).total_seconds(), 0.0)
        self._write(
            "UPDATE phases SET state = ?, ended = ?, seconds = ?,"
            " detail = COALESCE(?, detail) WHERE id = ?",
            (state, iso(moment), seconds, to_json(detail) if detail is not None else None,
             phase_id),
        )
        return self.phase(phase_id)

    def phase(self, phase_id: int) -> PhaseRecord:
        """The phase with id ``phase_id``."""
        row = self._row("SELECT * FROM phases WHERE id = ?", (phase_id,))
        if row is None:
            raise JournalError(f"no phase #{phase_id} in the journal {self.where}")
        return PhaseRecord.from_row(row)

    def phases(self, release_id: int) -> list[PhaseRecord]:
        """The phases of a release, in the order they began."""
        rows = self._rows("SELECT * FROM phases WHERE release_id = ? ORDER BY id", (release_id,))
        return [PhaseRecord.from_row(r) for r in rows]

    def set_host_state(self, release_id: int, host: str, state: HostState, *,
                       version_before: str | None = None,
                       version_after: str | None = None) -> None:
        """Record where ``host`` stands; versions left as None keep their stored value."""
        self._write(
            "INSERT INTO host_states (release_id, host, state, version_before, version_after,"
            " updated) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (release_id, host) DO UPDATE SET"
            " state = excluded.state, updated = excluded.updated,"
            " version_before = COALESCE(excluded.version_before, host_states.version_before),"
            " version_after = COALESCE(excluded.version_after, host_states.version_after)",
            (release_id, host, state, version_before, version_after, self._now()),
        )

    def host_states(self, release_id: int) -> list[HostStateRecord]:
        """Every host's state in a release, by host name."""
        rows = self._rows("SELECT * FROM host_states WHERE release_id = ? ORDER BY host",
                          (release_id,))
        return [HostStateRecord.from_row(r) for r in rows]

    def add_snapshot(self, release_id: int, *, host: str, item: str, kind: str, path: Path,
                     sha256: str, size_bytes: int, meta: Detail = None,
                     verified: bool = False) -> int:
        """Record a snapshot of ``item`` on ``host`` (replacing an earlier one); its id."""
        self._write(
            "INSERT INTO snapshots (release_id, host, item, kind, path, sha256, bytes, meta,"
            " verified, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (release_id, host, item) DO UPDATE SET kind = excluded.kind,"
            " path = excluded.path, sha256 = excluded.sha256, bytes = excluded.bytes,"
            " meta = excluded.meta, verified = excluded.verified, created = excluded.created",
            (release_id, host, item, kind, str(path), sha256, size_bytes, to_json(meta),
             int(verified), self._now()),
        )
        row = self._row("SELECT id FROM snapshots WHERE release_id = ? AND host = ? AND item = ?",
                        (release_id, host, item))
        return int(row["id"]) if row is not None else 0

    def set_snapshot_verified(self, snapshot_id: int, verified: bool = True) -> None:
        """Record whether a snapshot's copy was checked against its sha256."""
        self._write("UPDATE snapshots SET verified = ? WHERE id = ?", (int(verified), snapshot_id))

    def snapshots(self, release_id: int, host: str | None = None) -> list[SnapshotRecord]:
        """The snapshots of a release (of one host, if given), in the order taken."""
        rows = self._rows(
            "SELECT * FROM snapshots WHERE release_id = ? AND (? IS NULL OR host = ?)"
            " ORDER BY id", (release_id, host, host),
        )
        return [SnapshotRecord.from_row(r) for r in rows]

    def live_snapshots(self) -> list[SnapshotRecord]:
        """Every snapshot row retention has not dropped, of every release."""
        rows = self._rows("SELECT * FROM snapshots WHERE pruned IS NULL ORDER BY id")
        return [SnapshotRecord.from_row(r) for r in rows]

    def snapshot_releases(self, service: str, environment: str) -> list[ReleaseRecord]:
        """The releases of a service in an environment that hold a snapshot not dropped,
        oldest first."""
        rows = self._rows(
            "SELECT * FROM releases WHERE service = ? AND environment = ? AND id IN"
            " (SELECT release_id FROM snapshots WHERE pruned IS NULL) ORDER BY id",
            (service, environment))
        return [ReleaseRecord.from_row(r) for r in rows]

    def prune_snapshots(self, release_id: int) -> None:
        """Mark a release's snapshots as dropped by retention (the rows stay)."""
        self._write("UPDATE snapshots SET pruned = ? WHERE release_id = ? AND pruned IS NULL",
                    (self._now(), release_id))

    def add_gate_result(self, release_id: int, *, phase: str, kind: GateKind, verdict: Verdict,
                        figures: Detail = None, junit: Path | None = None) -> int:
        """Record a gate's verdict with its figures (p50/p95/p99/rps/...); its id."""
        return self._insert(
            "INSERT INTO gate_results (release_id, phase, kind, verdict, figures, junit,"
            " created) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (release_id, phase, kind, verdict, to_json(figures),
             str(junit) if junit else None, self._now()),
        )

    def gate_results(self, release_id: int) -> list[GateRecord]:
        """The gate verdicts of a release, in the order recorded."""
        rows = self._rows("SELECT * FROM gate_results WHERE release_id = ? ORDER BY id",
                          (release_id,))
        return [GateRecord.from_row(r) for r in rows]
