"""Continuity as data: targets judged, catch-up lists computed, reports and the DR plan
rendered. Pure functions: the engine measures, this module decides and writes it down.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from controller.models.continuity import ContinuityPlan
from controller.models.durations import format_duration
from controller.models.rows import CatchUp, TableRows


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

    def markdown(self) -> list[str]:
        lines = ["| t (s) | event |", "|---:|---|"]
        lines += [f"| {at:.3f} | {_cell(what)} |" for at, what in sorted(self.events)]
        return lines


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _seconds(value: float | None) -> str:
    return "—" if value is None else format_duration(value)


def targets_markdown(results: list[dict[str, Any]]) -> list[str]:
    lines = ["| priority | function | RTO measured | RTO target | RPO measured | RPO target "
             "| result |", "|---:|---|---:|---:|---:|---:|---|"]
    for r in results:
        ok = r["rto_met"] and r["rpo_met"]
        lines.append(
            f"| {r['priority']} | {r['function']} | {_seconds(r['rto_s'])} "
            f"| {_seconds(r['rto_target_s'])} | {_seconds(r['rpo_s'])} "
            f"| {_seconds(r['rpo_target_s'])} | {'PASS' if ok else '**FAIL**'} |")
    return lines


def drill_markdown(report: dict[str, Any]) -> str:
    """The drill report people read (``report`` is the drill's JSON document)."""
    m = report["measures"]
    lines = [
        f"# Drill {report['id']}: {report['scenario']} ({report['service']}@"
        f"{report['environment']})",
        "",
        f"- **Started:** {report['started']}  **Verdict:** {report['verdict'].upper()}",
        f"- **Fault:** {report['fault']}",
        f"- **Release running:** {report.get('release') or 'unknown'}",
        f"- **RTO:** {_seconds(m.get('rto_s'))} from the fault "
        f"({_seconds(m.get('rto_from_detection_s'))} from detection); "
        f"detection took {_seconds(m.get('detection_s'))}",
        f"- **RPO:** {_seconds(m.get('rpo_s'))} (age of the newest copy of the data when the "
        "fault hit)",
        f"- **Requests failed during the drill:** {m.get('load_failures', 0)} of "
        f"{m.get('load_requests', 0)} (Locust): idempotent (GET, PUT, ...; the LB may retry "
        f"them) {m.get('load_failures_idempotent', '—')} of "
        f"{m.get('load_requests_idempotent', '—')}, non-idempotent (POST, PATCH) "
        f"{m.get('load_failures_non_idempotent', '—')} of "
        f"{m.get('load_requests_non_idempotent', '—')}; relctl's probe saw "
        f"{m.get('probe_failures', 0)} failed of {m.get('probe_requests', 0)}, outage "
        f"{_seconds(m.get('outage_s'))}",
        f"- **Served after recovery by:** {', '.join(m.get('served_by_after') or []) or '—'}",
        "",
        "## Targets per critical function",
        "",
        *targets_markdown(report["targets"]),
        "",
        "## Timeline",
        "",
        *Timeline([(e[0], e[1]) for e in report["timeline"]]).markdown(),
        "",
        "## What went wrong",
        "",
        *([f"- {_cell(p)}" for p in report["problems"]] or ["- nothing"]),
        "",
        "## Improvement items",
        "",
        *([f"- [ ] {_cell(i)}" for i in report["improvements"]] or ["- none"]),
        "",
    ]
    return "\n".join(lines)


def improvements(plan: ContinuityPlan, targets: list[TargetResult], measures: dict[str, Any],
                 problems: list[str]) -> list[str]:
    """Improvement items a drill's figures call for."""
    items = []
    for t in targets:
        if not t.rto_met:
            items.append(f"{t.function}: recovery took {_seconds(t.rto_s)} against a target of "
                         f"{_seconds(t.rto_target_s)}; shorten detection or pre-stage the "
                         "backup site, or renegotiate the target")
        if not t.rpo_met and t.rpo_s is not None:
            every = min((d.every for d in plan.data), default=None)
            items.append(f"{t.function}: {_seconds(t.rpo_s)} of data at risk against "
                         f"{_seconds(t.rpo_target_s)}; replicate more often than every "
                         f"{_seconds(every)} (relctl replicate --every)")
    if measures.get("load_failures"):
        items.append(f"{measures['load_failures']} requests failed during the drill: make "
                     "clients retry idempotent requests, or shorten detection")
    if problems:
        items.append("fix what went wrong (above) and run the drill again")
    return items


def catch_up_markdown(record_id: int, catch: CatchUp, replica_at: str | None) -> str:
    """The failback's catch-up report."""
    lines = [f"# Catch-up report (failback {record_id})", "",
             f"Last replication before the failover: {replica_at or 'none'}", "",
             "## On the old primary, missing on the backup: re-enter these", ""]
    lines += _rows_markdown(catch.missing_on_backup)
    lines += ["", "## Written on the backup site during the outage (kept)", ""]
    lines += _rows_markdown(catch.only_on_backup)
    return "\n".join(lines) + "\n"


def _rows_markdown(tables: dict[str, list[dict[str, Any]]]) -> list[str]:
    if not tables:
        return ["none"]
    lines: list[str] = []
    for table, rows in tables.items():
        columns = list(rows[0])
        lines += [f"Table `{table}` ({len(rows)} rows):", "",
                  "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(_cell(row[c]) for c in columns) + " |" for row in rows]
        lines.append("")
    return lines


def dr_plan_markdown(plan: ContinuityPlan, *, release: str | None, hosts: dict[str, list[str]],
                     last_drill: dict[str, Any] | None, generated: str) -> str:
    """The continuity (DR) plan document, regenerated after every drill."""
    lines = [
        f"# Disaster-recovery plan: {plan.service} in {plan.environment}", "",
        f"Generated by relctl on {generated}. Current release: {release or 'unknown'}.", "",
        "## Critical business functions", "",
        "| priority | function | check through the LB | RTO target | RPO target "
        "| last measured RTO | last measured RPO |",
        "|---:|---|---|---:|---:|---:|---:|",
    ]
    measured = {t["function"]: t for t in (last_drill or {}).get("targets", [])}
    for f in plan.by_priority():
        last = measured.get(f.name, {})
        lines.append(f"| {f.priority} | {f.name} | {f.check.method} {f.check.path} → "
                     f"{f.check.expect_status} | {_seconds(f.rto)} | {_seconds(f.rpo)} "
                     f"| {_seconds(last.get('rto_s'))} | {_seconds(last.get('rpo_s'))} |")
    lines += ["", "## Sites", ""]
    lines += [f"- **{role}** (`{group}`): {', '.join(hosts.get(group, [])) or 'no hosts'}"
              for role, group in (("primary", plan.sites.primary),
                                  ("backup", plan.sites.backup), ("load balancer", plan.lb.group))]
    lines += ["", "## Data replicated", ""]
    lines += [f"- `{d.name}`: {d.summary}" for d in plan.data] or ["- none"]
    lines += [
        "", "## Recovery procedure", "",
        "1. Confirm the primary site is lost (health checks fail; `relctl lab status` on the "
        "lab).",
        "2. `relctl failover --plan PLAN`: checks the backup hosts, puts them on the last good "
        "release with the newest replica, switches HAProxy through its runtime API, verifies "
        "every critical function in priority order.",
        "3. Tell the contacts below; record the incident.",
        "4. When the primary site is back: `relctl failback --plan PLAN`; re-enter the "
        "transactions listed in its catch-up report.",
        "", "## Contacts", "",
    ]
    lines += [f"- {c.name} ({c.role or 'contact'}): {c.channel}" for c in plan.contacts] or [
        "- none declared"]
    if last_drill:
        lines += ["", "## Last drill", "",
                  f"Drill {last_drill['id']} ({last_drill['scenario']}) on "
                  f"{last_drill['started']}: {last_drill['verdict'].upper()}."]
    return "\n".join(lines) + "\n"
