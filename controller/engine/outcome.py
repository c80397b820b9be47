"""How a release ended, for people and for pipelines (``apply --json``, reports)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from controller.reports.catch_up import DataReports


@dataclass
class ReleaseOutcome:
    """How a release ended, for people and for pipelines."""

    release: str
    release_id: int | None
    state: str
    exit_code: int
    message: str
    hosts: list[str] = field(default_factory=list)
    seconds: float = 0.0
    gates: list[dict[str, Any]] = field(default_factory=list)
    phases: list[dict[str, Any]] = field(default_factory=list)  # name, state, seconds
    data: DataReports = field(default_factory=dict)  # what a rollback did with the data
    # dry run: host -> the tasks that would change it, with their diffs
    changes: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    # released: what the backup site did (its continuity plan covers the manifest)
    backup_site: dict[str, Any] | None = None
