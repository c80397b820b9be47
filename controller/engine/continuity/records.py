"""Typed results of failovers, failbacks and drills, and the step runner they share.

Each result is a dataclass read by attribute in relctl; ``as_dict()`` gives the JSON the
journal keeps and ``--json`` prints (the same keys as the dataclass fields).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from controller.errors import ContinuityError, RelctlError
from controller.journal import ContinuityRecord
from controller.planning.continuity import Timeline

Progress = Callable[[str], None]


def rounded(value: float | None) -> float | None:
    """Seconds to the millisecond, as reports show them (None stays None)."""
    return None if value is None else round(value, 3)


class Figures(Protocol):
    def as_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class _AsDict:
    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ReplicaRecord:
    """A replication as the journal keeps it: what a failover loads and RPO counts from."""

    id: int
    captured_at: datetime | None
    bundle: Path | None  # the fetched bundle on the controller
    loaded_on: list[str]
    bytes: int
    tested: list[dict[str, Any]]  # test failovers that used it: at, test_failover, ok
    method: str = "copy"  # copy (bundle: the writer's copies) | litestream (restored)

    @classmethod
    def of(cls, record: ContinuityRecord) -> ReplicaRecord:
        detail = record.detail
        captured = detail.get("captured_at")
        return cls(record.id, datetime.fromisoformat(captured) if captured else None,
                   Path(detail["bundle"]) if detail.get("bundle") else None,
                   list(detail.get("loaded_on", [])), int(detail.get("bytes", 0)),
                   list(detail.get("tested", [])), str(detail.get("method", "copy")))

    @property
    def folder(self) -> Path | None:
        """The folder of the replica's databases and index.json on the controller."""
        if self.bundle is None:
            return None
        # copy: the bundle folder (replicas of relctl 0.x name its bundle.tar beside it)
        return (self.bundle.parent / "bundle" if self.bundle.name == "bundle.tar"
                else self.bundle)

    @property
    def captured_iso(self) -> str | None:
        return self.captured_at.isoformat() if self.captured_at else None


@dataclass(frozen=True)
class FailoverFigures(_AsDict):
    """What a failover measured (seconds; RTO counted from its start, the detection of the
    fault and the fault itself when a drill knows them)."""

    version: str | None
    preflight: str
    preflight_s: float
    switch_s: float
    verify_s: float
    rto_from_start_s: float | None
    rto_from_detection_s: float | None
    rto_from_fault_s: float | None
    functions_at_s: dict[str, float | None]
    served_by: list[str]
    replica_id: int | None
    replica_captured_at: str | None
    rpo_s: float | None
    started_at: str


@dataclass(frozen=True)
class FailbackFigures(_AsDict):
    """What a failback did: its length, who serves, and the rows to re-enter."""

    seconds: float
    served_by: list[str]
    catch_up: dict[str, Any]
    catch_up_report: str
    to_re_enter: int
    # How long the backups were out of the LB's service for the last copy of their data
    # (new requests held or 503) until the primaries took over; None: nothing held.
    writes_held_s: float | None = None


@dataclass(frozen=True)
class DrillReport(_AsDict):
    """One drill, as its Markdown, JUnit and HTML reports and ``--json`` show it."""

    id: int
    scenario: str
    fault: str
    service: str
    environment: str
    started: str
    verdict: str  # pass | missed | fail
    release: str | None
    measures: dict[str, Any]
    targets: list[dict[str, Any]]
    timeline: list[tuple[float, str]]
    problems: list[str]
    restored: bool  # every fault undone, as its timeline says (False: --no-restore too)
    improvements: list[str]
    max_failure_ratio: float | None
    mode: str = "lab"  # lab (recorded pids) or inventory (Ansible, declared commands)
    faults: list[dict[str, Any]] = field(default_factory=list)
    probe: dict[str, Any] = field(default_factory=dict)
    moments: dict[str, float | None] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    preflight: list[dict[str, Any]] = field(default_factory=list)  # the checks before it


@dataclass
class Outcome:
    """How a failover, failback or drill ended, with its figures, for people and
    pipelines."""

    kind: str
    record_id: int
    ok: bool
    exit_code: int
    message: str
    figures: Figures | None = None
    timeline: list[tuple[float, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    report: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "kind": self.kind, "id": self.record_id,
                "exit_code": self.exit_code, "message": self.message,
                "figures": self.figures.as_dict() if self.figures else {},
                "timeline": self.timeline, "warnings": self.warnings}


@dataclass(frozen=True)
class Step:
    """One step of a failover or failback: ``run`` returns what to put on the timeline."""

    name: str
    run: Callable[[], str | None]


@dataclass
class StepRunner:
    """Walks a plan of steps in order, timing each onto one timeline (as ``apply`` walks
    its phases); the first failing step stops the walk with its name in the error."""

    kind: str
    progress: Progress
    started: float = field(default_factory=time.monotonic)
    timeline: Timeline = field(default_factory=Timeline)
    warnings: list[str] = field(default_factory=list)

    def mark(self, what: str) -> None:
        self.timeline.add(time.monotonic() - self.started, what)
        self.progress(what)

    def walk(self, steps: list[Step]) -> None:
        for step in steps:
            try:
                note = step.run()
            except RelctlError as error:
                self.mark(f"{step.name}: FAILED")
                raise ContinuityError(f"{self.kind} failed at {step.name}: {error.message}",
                                      hint=error.hint) from error
            if note:
                self.mark(note)

    def since_start(self) -> float:
        return time.monotonic() - self.started
