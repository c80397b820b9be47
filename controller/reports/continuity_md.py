"""Continuity's documents in Markdown: a drill's report, a failback's catch-up report and
the DR plan. Pure rendering of what the engine measured and ``planning.continuity``
judged."""

from __future__ import annotations

from typing import Any

from controller.models.continuity import ContinuityPlan
from controller.models.durations import duration_text
from controller.models.rows import CatchUp


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def timeline_markdown(events: list[tuple[float, str]]) -> list[str]:
    """A failover's or drill's events, in seconds since it started, as a table."""
    lines = ["| t (s) | event |", "|---:|---|"]
    lines += [f"| {at:.3f} | {_cell(what)} |" for at, what in sorted(events)]
    return lines


def targets_markdown(results: list[dict[str, Any]]) -> list[str]:
    lines = ["| priority | function | RTO measured | RTO target | RPO measured | RPO target "
             "| result |", "|---:|---|---:|---:|---:|---:|---|"]
    for r in results:
        ok = r["rto_met"] and r["rpo_met"]
        lines.append(
            f"| {r['priority']} | {r['function']} | {duration_text(r['rto_s'])} "
            f"| {duration_text(r['rto_target_s'])} | {duration_text(r['rpo_s'])} "
            f"| {duration_text(r['rpo_target_s'])} | {'PASS' if ok else '**FAIL**'} |")
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
        f"- **RTO:** {duration_text(m.get('rto_s'))} from the fault "
        f"({duration_text(m.get('rto_from_detection_s'))} from detection); "
        f"detection took {duration_text(m.get('detection_s'))}",
        f"- **RPO:** {duration_text(m.get('rpo_s'))} (age of the newest copy of the data when the "
        "fault hit)",
        f"- **Requests failed during the drill:** {m.get('load_failures', 0)} of "
        f"{m.get('load_requests', 0)} (Locust): idempotent (GET, PUT, ...; the LB may retry "
        f"them) {m.get('load_failures_idempotent', '—')} of "
        f"{m.get('load_requests_idempotent', '—')}, non-idempotent (POST, PATCH) "
        f"{m.get('load_failures_non_idempotent', '—')} of "
        f"{m.get('load_requests_non_idempotent', '—')}; relctl's probe saw "
        f"{m.get('probe_failures', 0)} failed of {m.get('probe_requests', 0)}, outage "
        f"{duration_text(m.get('outage_s'))}",
        f"- **Served after recovery by:** {', '.join(m.get('served_by_after') or []) or '—'}",
        "",
        "## Targets per critical function",
        "",
        *targets_markdown(report["targets"]),
        "",
        "## Timeline",
        "",
        *timeline_markdown([(e[0], e[1]) for e in report["timeline"]]),
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
                     last_drill: dict[str, Any] | None, generated: str,
                     versions: dict[str, str] | None = None,
                     release_version: str | None = None) -> str:
    """The continuity (DR) plan document, regenerated after every drill; ``versions``:
    what each host reported before it (a backup site on another release is a risk)."""
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
                     f"{f.check.expect_status} | {duration_text(f.rto)} | {duration_text(f.rpo)} "
                     f"| {duration_text(last.get('rto_s'))} | {duration_text(last.get('rpo_s'))} |")
    lines += ["", "## Sites", ""]
    seen = versions or {}

    def named(host: str) -> str:
        return f"{host} ({seen[host]})" if host in seen else host

    lines += [f"- **{role}** (`{group}`): "
              f"{', '.join(named(h) for h in hosts.get(group, [])) or 'no hosts'}"
              for role, group in (("primary", plan.sites.primary),
                                  ("backup", plan.sites.backup), ("load balancer", plan.lb.group))]
    behind = [h for h in hosts.get(plan.sites.backup, [])
              if versions is not None and release_version and seen.get(h) != release_version]
    if behind:
        lines += ["", f"**Risk: version skew.** {', '.join(named(h) for h in behind)} not on "
                  f"{release_version}: a failover deploys it there first, and the RTO grows "
                  "by that deploy. List the release manifests under the plan's `releases:` "
                  "so the backup site follows every release."]
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
