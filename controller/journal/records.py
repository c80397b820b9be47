"""What the journal holds, as small frozen records built from its rows."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol, get_args

ReleaseState = Literal[
    "planned", "snapshotting", "applying", "verifying", "released",
    "rolling_back", "rolled_back", "rollback_failed", "failed", "aborted",
]
PhaseState = Literal["running", "ok", "failed", "skipped"]
HostState = Literal[
    "pending", "snapshotted", "applying", "applied", "verified", "restored", "failed",
]
GateKind = Literal["testinfra", "locust"]
Verdict = Literal["pass", "fail", "inconclusive"]
ContinuityKind = Literal["replication", "failover", "failback", "drill"]
MonitorState = Literal[
    "running", "passed", "ended", "stopped", "rolled_back", "alerted", "failed",
]
MonitorVerdict = Literal["pass", "fail", "inconclusive", "skipped"]
ChildState = Literal["starting", "running", "ended", "stopped"]

RELEASE_STATES: tuple[str, ...] = get_args(ReleaseState)
PHASE_STATES: tuple[str, ...] = get_args(PhaseState)
HOST_STATES: tuple[str, ...] = get_args(HostState)
GATE_KINDS: tuple[str, ...] = get_args(GateKind)
VERDICTS: tuple[str, ...] = get_args(Verdict)
CONTINUITY_KINDS: tuple[str, ...] = get_args(ContinuityKind)
MONITOR_STATES: tuple[str, ...] = get_args(MonitorState)
MONITOR_VERDICTS: tuple[str, ...] = get_args(MonitorVerdict)
CHILD_STATES: tuple[str, ...] = get_args(ChildState)
FINAL_STATES: frozenset[str] = frozenset(
    {"released", "rolled_back", "rollback_failed", "failed", "aborted"}
)


class Row(Protocol):
    """A row as the journal's backends return it, read by column name (``sqlite3.Row``,
    or psycopg's ``dict_row``)."""

    def __getitem__(self, key: str, /) -> Any: ...


def parse_time(text: str | None) -> datetime | None:
    """A stored ISO-8601 time, or None."""
    return datetime.fromisoformat(text) if text else None


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _json(text: str | None) -> dict[str, Any]:
    value = json.loads(text) if text else {}
    return value if isinstance(value, dict) else {"value": value}


@dataclass(frozen=True, slots=True)
class Holder:
    """A process that runs a release or holds a lock: who, where, and which process."""

    user: str
    host: str
    pid: int
    started: float  # the process's create time, to tell a reused pid

    def __str__(self) -> str:
        return f"{self.user}@{self.host} (pid {self.pid})"


@dataclass(frozen=True, slots=True)
class ReleaseRecord:
    """One attempt to release a manifest."""

    id: int
    name: str
    version: str
    service: str
    environment: str
    manifest_path: Path
    manifest_sha256: str
    state: ReleaseState
    bad: bool
    started: datetime
    ended: datetime | None
    operator: Holder
    exit_code: int | None
    message: str | None
    bad_since: datetime | None = None  # when it was marked bad (None: not, or not known)
    bad_reason: str | None = None

    @property
    def finished(self) -> bool:
        """True once the release reached a final state."""
        return self.state in FINAL_STATES

    @classmethod
    def from_row(cls, row: Row) -> ReleaseRecord:
        """The record of a ``releases`` row."""
        operator = Holder(row["operator_user"], row["operator_host"], row["operator_pid"],
                          row["operator_started"])
        return cls(
            id=row["id"], name=row["name"], version=row["version"], service=row["service"],
            environment=row["environment"], manifest_path=Path(row["manifest_path"]),
            manifest_sha256=row["manifest_sha256"], state=row["state"], bad=bool(row["bad"]),
            started=_time(row["started"]), ended=parse_time(row["ended"]), operator=operator,
            exit_code=row["exit_code"], message=row["message"],
            bad_since=parse_time(row["bad_since"]), bad_reason=row["bad_reason"],
        )


@dataclass(frozen=True, slots=True)
class PhaseRecord:
    """One step of a release (snapshot, apply:batch1, gate:testinfra:batch1, rollback...)."""

    id: int
    release_id: int
    name: str
    state: PhaseState
    started: datetime
    ended: datetime | None
    seconds: float | None
    detail: dict[str, Any]

    @classmethod
    def from_row(cls, row: Row) -> PhaseRecord:
        """The record of a ``phases`` row."""
        return cls(row["id"], row["release_id"], row["name"], row["state"],
                   _time(row["started"]), parse_time(row["ended"]), row["seconds"],
                   _json(row["detail"]))


@dataclass(frozen=True, slots=True)
class HostStateRecord:
    """Where one host stands in a release."""

    release_id: int
    host: str
    state: HostState
    version_before: str | None
    version_after: str | None
    updated: datetime

    @classmethod
    def from_row(cls, row: Row) -> HostStateRecord:
        """The record of a ``host_states`` row."""
        return cls(row["release_id"], row["host"], row["state"], row["version_before"],
                   row["version_after"], _time(row["updated"]))


@dataclass(frozen=True, slots=True)
class SnapshotRecord:
    """A saved copy of one configuration item of one host, kept on the controller."""

    id: int
    release_id: int
    host: str
    item: str
    kind: str
    path: Path
    sha256: str
    size_bytes: int
    meta: dict[str, Any]
    verified: bool
    created: datetime
    pruned: datetime | None = None  # when retention dropped it (it cannot be restored)

    @classmethod
    def from_row(cls, row: Row) -> SnapshotRecord:
        """The record of a ``snapshots`` row."""
        return cls(row["id"], row["release_id"], row["host"], row["item"], row["kind"],
                   Path(row["path"]), row["sha256"], row["bytes"], _json(row["meta"]),
                   bool(row["verified"]), _time(row["created"]),
                   _time(row["pruned"]) if row["pruned"] else None)


@dataclass(frozen=True, slots=True)
class GateRecord:
    """The verdict of one gate run."""

    id: int
    release_id: int
    phase: str
    kind: GateKind
    verdict: Verdict
    figures: dict[str, Any]
    junit: Path | None
    created: datetime

    @classmethod
    def from_row(cls, row: Row) -> GateRecord:
        """The record of a ``gate_results`` row."""
        junit = Path(row["junit"]) if row["junit"] else None
        return cls(row["id"], row["release_id"], row["phase"], row["kind"], row["verdict"],
                   _json(row["figures"]), junit, _time(row["created"]))


@dataclass(frozen=True, slots=True)
class EventRecord:
    """A free-form line of the release log."""

    id: int
    release_id: int | None
    time: datetime
    message: str

    @classmethod
    def from_row(cls, row: Row) -> EventRecord:
        """The record of an ``events`` row."""
        return cls(row["id"], row["release_id"], _time(row["time"]), row["message"])


@dataclass(frozen=True, slots=True)
class LockRecord:
    """Who holds an environment, for which release, since when."""

    environment: str
    release: str
    holder: Holder
    acquired: datetime

    @classmethod
    def from_row(cls, row: Row) -> LockRecord:
        """The record of a ``locks`` row."""
        holder = Holder(row["holder_user"], row["holder_host"], row["holder_pid"],
                        row["holder_started"])
        return cls(row["environment"], row["release"], holder, _time(row["acquired"]))


@dataclass(frozen=True, slots=True)
class ManifestRef:
    """One manifest text in one environment: what a sign-off approves."""

    environment: str
    path: Path
    sha256: str

    @classmethod
    def from_row(cls, row: Row) -> ManifestRef | None:
        """The reference a row holds; None for a sign-off recorded before they had one."""
        if row["manifest_sha256"] is None or row["environment"] is None:
            return None
        return cls(row["environment"], Path(row["manifest_path"] or ""), row["manifest_sha256"])


@dataclass(frozen=True, slots=True)
class SignoffRecord:
    """An approval of a release by someone in a role, of one manifest text in one
    environment (``signed`` is None for the sign-offs of older journals)."""

    id: int
    release: str
    role: str
    by: str
    note: str
    time: datetime
    signed: ManifestRef | None = None

    @classmethod
    def from_row(cls, row: Row) -> SignoffRecord:
        """The record of a ``signoffs`` row."""
        return cls(row["id"], row["release"], row["role"], row["signed_by"], row["note"],
                   _time(row["time"]), ManifestRef.from_row(row))


@dataclass(frozen=True, slots=True)
class SignoffRequest:
    """A manifest ``apply`` refused or waits for, until its roles sign it off."""

    id: int
    release: str
    manifest: ManifestRef
    time: datetime

    @classmethod
    def from_row(cls, row: Row) -> SignoffRequest:
        """The record of a ``signoff_requests`` row."""
        ref = ManifestRef(row["environment"], Path(row["manifest_path"]), row["manifest_sha256"])
        return cls(row["id"], row["release"], ref, _time(row["time"]))


@dataclass(frozen=True, slots=True)
class ContinuityRecord:
    """A replication, failover, failback or drill, with its figures (and report)."""

    id: int
    kind: ContinuityKind
    service: str
    environment: str
    state: PhaseState
    started: datetime
    ended: datetime | None
    operator: str
    detail: dict[str, Any]
    report: str | None

    @classmethod
    def from_row(cls, row: Row) -> ContinuityRecord:
        return cls(id=row["id"], kind=row["kind"], service=row["service"],
                   environment=row["environment"], state=row["state"],
                   started=_time(row["started"]), ended=parse_time(row["ended"]),
                   operator=f"{row['operator_user']}@{row['operator_host']}",
                   detail=_json(row["detail"]), report=row["report"])

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"id": self.id, "kind": self.kind, "service": self.service,
                "environment": self.environment, "state": self.state,
                "started": self.started.isoformat(),
                "ended": self.ended.isoformat() if self.ended else None,
                "operator": self.operator, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class MonitorRecord:
    """One warranty monitor of a release: its settings, how it ended, and its summary."""

    id: int
    release_id: int
    state: MonitorState
    started: datetime
    ended: datetime | None
    settings: dict[str, Any]
    operator: Holder
    exit_code: int | None
    message: str | None
    summary: dict[str, Any]

    @classmethod
    def from_row(cls, row: Row) -> MonitorRecord:
        """The record of a ``monitors`` row."""
        operator = Holder(row["operator_user"], row["operator_host"], row["operator_pid"],
                          row["operator_started"])
        return cls(row["id"], row["release_id"], row["state"], _time(row["started"]),
                   parse_time(row["ended"]), _json(row["settings"]), operator,
                   row["exit_code"], row["message"], _json(row["summary"]))


@dataclass(frozen=True, slots=True)
class MonitorRoundRecord:
    """One round of a warranty monitor; ``verdict`` is None while it runs."""

    id: int
    monitor_id: int
    release_id: int
    round: int
    started: datetime
    ended: datetime | None
    verdict: MonitorVerdict | None
    detail: dict[str, Any]

    @classmethod
    def from_row(cls, row: Row) -> MonitorRoundRecord:
        """The record of a ``monitor_rounds`` row."""
        return cls(row["id"], row["monitor_id"], row["release_id"], row["round"],
                   _time(row["started"]), parse_time(row["ended"]), row["verdict"],
                   _json(row["detail"]))


@dataclass(frozen=True, slots=True)
class ChildRecord:
    """A process relctl started for a release: its launcher's pid once known."""

    id: int
    release_id: int | None
    label: str
    program: str
    host: str  # the machine it runs on (the controller's)
    owner_pid: int  # the controller that started it
    owner_started: float
    record: Path  # the launcher's pid file, written before the program starts
    pid: int | None
    started: float | None
    state: ChildState
    created: datetime
    ended: datetime | None
    exit_code: int | None

    @classmethod
    def from_row(cls, row: Row) -> ChildRecord:
        """The record of a ``children`` row."""
        return cls(row["id"], row["release_id"], row["label"], row["program"], row["host"],
                   row["owner_pid"], row["owner_started"], Path(row["record"]), row["pid"],
                   row["started"], row["state"],
                   _time(row["created"]), parse_time(row["ended"]), row["exit_code"])
