"""Continuity as data: targets judged, catch-up lists computed, reports and the DR plan
rendered. Pure functions: the engine measures, this module decides and writes it down.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.models.continuity import ContinuityPlan
from controller.models.durations import duration_text
from controller.models.rows import CatchUp, TableRows


def covers(plan_path: Path, releases: list[str], manifest_path: Path) -> bool:
    """Whether one of a plan's ``releases`` (paths or globs relative to the plan) names
    the manifest at ``manifest_path``."""
    manifest = os.path.normpath(manifest_path.absolute())
    return any(fnmatch.fnmatchcase(manifest, os.path.normpath(plan_path.absolute().parent
                                                              / pattern))
               for pattern in releases)


def catch_up(old_primary: dict[str, TableRows], backup: dict[str, TableRows],
             replica: dict[str, TableRows] | None) -> CatchUp:
    """Rows on the old primary and not on the backup (to re-enter), and vice versa.

    Rows are compared whole: the same id with other values is a different transaction
    (both sites kept counting ids after the split).
    """
    missing: dict[str, list[dict[str, Any]]] = {}
    extra: dict[str, list[dict[str, Any]]] = {}
    after: dict[str, int] = {}
    for table in sorted(set(old_primary) | set(backup)):
        old = old_primary.get(table, TableRows([], []))
        new = backup.get(table, TableRows(old.columns, []))
        columns = old.columns or new.columns
        old_set, new_set = set(old.rows), set(new.rows)
        missing[table] = [dict(zip(columns, r, strict=False)) for r in old.rows
                          if r not in new_set]
        extra[table] = [dict(zip(columns, r, strict=False)) for r in new.rows
                        if r not in old_set]
        if replica is not None:
            base = set(replica.get(table, TableRows(columns, [])).rows)
            after[table] = sum(1 for r in old.rows if r not in base)
    return CatchUp({t: r for t, r in missing.items() if r}, {t: r for t, r in extra.items() if r},
                   after)


@dataclass(frozen=True)
class TargetResult:
    """One critical function's measured recovery against its targets."""

    function: str
    priority: int
    rto_target_s: float
    rto_s: float | None  # None: never verified
    rpo_target_s: float
    rpo_s: float | None  # None: no data was at risk
    rto_met: bool
    rpo_met: bool


def judge_targets(plan: ContinuityPlan, recovered_s: dict[str, float | None],
                  rpo_s: float | None) -> list[TargetResult]:
    """Each function's RTO (seconds from the fault to verified) and RPO against its targets."""
    results = []
    for function in plan.by_priority():
        rto = recovered_s.get(function.name)
        results.append(TargetResult(
            function.name, function.priority, function.rto, rto, function.rpo, rpo_s,
            rto is not None and rto <= function.rto, rpo_s is None or rpo_s <= function.rpo))
    return results


@dataclass
class Timeline:
    """Events of a failover or drill, in seconds since it started."""

    events: list[tuple[float, str]] = field(default_factory=list)

    def add(self, at: float, what: str) -> None:
        self.events.append((round(at, 3), what))


def improvements(plan: ContinuityPlan, targets: list[TargetResult], measures: dict[str, Any],
                 problems: list[str]) -> list[str]:
    """Improvement items a drill's figures call for."""
    items = []
    for t in targets:
        if not t.rto_met:
            items.append(f"{t.function}: recovery took {duration_text(t.rto_s)} against a "
                         f"target of {duration_text(t.rto_target_s)}; shorten detection or "
                         "pre-stage the backup site, or renegotiate the target")
        if not t.rpo_met and t.rpo_s is not None:
            every = min((d.every for d in plan.data), default=None)
            items.append(f"{t.function}: {duration_text(t.rpo_s)} of data at risk against "
                         f"{duration_text(t.rpo_target_s)}; replicate more often than every "
                         f"{duration_text(every)} (relctl replicate --every)")
    if measures.get("load_failures"):
        items.append(f"{measures['load_failures']} requests failed during the drill: make "
                     "clients retry idempotent requests, or shorten detection")
    if problems:
        items.append("fix what went wrong (above) and run the drill again")
    return items


