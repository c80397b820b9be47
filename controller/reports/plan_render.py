"""The implementation plan as Markdown, self-contained HTML, or JSON.

Both text formats render one neutral document (headings, paragraphs, tables, checklists)
built by ``document``, so Markdown and HTML always say the same thing. Every value is
escaped for its format: ``|`` in Markdown cells, ``html.escape`` for all HTML text.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta
from typing import Any, Literal

from controller.planning.risks import format_span
from controller.planning.runbook import ImplementationPlan
from controller.reports.document import Block, Heading, Paragraph, Table, to_html, to_markdown

Format = Literal["markdown", "html", "json"]
FORMATS: tuple[Format, ...] = ("markdown", "html", "json")


def render(plan: ImplementationPlan, fmt: Format) -> str:
    """``plan`` as one document in ``fmt``."""
    if fmt == "json":
        return json.dumps(plan_dict(plan), indent=2, ensure_ascii=False) + "\n"
    if fmt == "html":
        return to_html(document(plan), f"Implementation plan {plan.release}")
    return to_markdown(document(plan))


def plan_dict(plan: ImplementationPlan) -> dict[str, Any]:
    """The plan as plain JSON values (times in ISO 8601 with their offset)."""
    data: dict[str, Any] = _jsonable(dataclasses.asdict(plan))
    for step, row in zip(plan.steps, data["steps"], strict=True):
        row["minutes"] = step.minutes
    data["rollback_estimate"]["minutes"] = plan.rollback_estimate.minutes
    return {**data, "start": plan.start.isoformat(), "end": plan.end.isoformat(),
            "total_minutes": plan.total_minutes,
            "points_of_no_return": plan.points_of_no_return}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value.isoformat() if isinstance(value, datetime) else value


# --- the document -------------------------------------------------------------------------


def document(plan: ImplementationPlan) -> list[Block]:
    """The plan as headings, paragraphs and tables, in the order the board reads them."""
    return [
        Heading(1, f"Implementation plan: {plan.release}"),
        Paragraph(f"{plan.service} {plan.version} into {plan.environment} "
                  f"(targets `{plan.targets}`), for sign-off by the change board."),
        Table(["Field", "Value"], _summary(plan)),
        Paragraph(_sites_intro(plan)),
        Table(["Site", "Host", "Runs now", "After the release"],
              [[s.site, s.host, s.now or "unknown", s.after or "unknown"] for s in plan.sites]),
        Heading(2, "1. Configuration items"),
        Table(["Host", "Item", "Kind", "Change", "Path"],
              [[c.host, c.item, c.kind, c.change, f"`{c.path}`"] for c in plan.items]),
        Heading(2, "2. Batches"),
        Table(["#", "Batch", "Hosts"], [[str(n), b.label, ", ".join(b.hosts)]
                                        for n, b in enumerate(plan.batches, start=1)]),
        Heading(2, "3. Cut-over runbook"),
        Paragraph(f"Starts {_when(plan.start)} ({plan.start_basis}); each step starts when "
                  f"the previous one ends; total {_span(plan.total_minutes)}, ends "
                  f"{_when(plan.end)}."),
        Table(["#", "Start", "End", "Step", "Owner", "Minutes", "Estimate"],
              [[str(s.number), _clock(s.start, plan), _clock(s.end, plan), s.title, s.owner,
                str(s.minutes), s.basis] for s in plan.steps],
              task="**{0}. {1}-{2}** {3} — owner: {4} — {5} min ({6})"),
        Heading(2, "4. Rollback plan"),
        Paragraph(_rollback_intro(plan)),
        Table(["Item", "Kind", "Restored by", "From snapshot", "Point of no return"],
              [[r.item, r.kind, r.restore, f"`{r.snapshot}`",
                "YES" if r.point_of_no_return else "no"] for r in plan.rollback]),
        Heading(2, "5. Risk register"),
        Table(["Risk", "Likelihood", "Impact", "Mitigation", "Source"],
              [[r.title, r.likelihood, r.impact, r.mitigation, r.source] for r in plan.risks]),
        Heading(2, "Sign-off"),
        Table(["Role", "Name", "Signature and date"],
              [["Release manager", plan.release_manager, ""],
               *[["Approver", name, ""] for name in plan.approvers]],
              task="**{0}**: {1} — signature and date: ____________"),
    ]


def _summary(plan: ImplementationPlan) -> list[list[str]]:
    window = (f"{_when(plan.window_start)} to {_when(plan.window_end)}"
              if plan.window_start and plan.window_end else "none declared")
    return [
        ["Release manager", plan.release_manager],
        ["Approvers", ", ".join(plan.approvers) or "none named"],
        ["Target hosts", ", ".join(plan.hosts)],
        ["Backup hosts", ", ".join(plan.backup_hosts) or "none"],
        ["Change window", window],
        ["Cut-over", f"{_when(plan.start)} to {_when(plan.end)} "
                     f"({_span(plan.total_minutes)}, from the {plan.start_basis})"],
        ["Rollback", f"{_span(plan.rollback_estimate.minutes)} "
                     f"({plan.rollback_estimate.basis})"],
        ["Points of no return", ", ".join(plan.points_of_no_return) or "none"],
    ]


def _sites_intro(plan: ImplementationPlan) -> str:
    said = "What each site runs, as the journal knows it (a host's last release, or follow)"
    if not plan.backup_hosts:
        return said + "."
    if plan.backup_plan is not None:
        return (f"{said}. The backup site follows this release: the continuity plan "
                f"`{plan.backup_plan}` lists it, so apply brings the backup hosts to it after "
                "the primaries pass.")
    return (f"{said}. The backup site does not follow this release: no continuity plan "
            "lists it under releases:.")


def _rollback_intro(plan: ImplementationPlan) -> str:
    snapshot = next((s.number for s in plan.steps if s.key == "snapshot"), "?")
    return (f"When a playbook or gate fails, relctl restores the snapshot taken at step "
            f"{snapshot} (into `{plan.snapshot_store}/<release-id>/`) on every host it "
            "touched, re-runs the testinfra checks on the restored state and marks the "
            f"release bad. Estimated duration: {_span(plan.rollback_estimate.minutes)} "
            f"({plan.rollback_estimate.basis}).")


def _when(moment: datetime | None) -> str:
    return moment.isoformat(timespec="minutes").replace("T", " ") if moment else "-"


def _clock(moment: datetime, plan: ImplementationPlan) -> str:
    """``22:15``, with the date when the runbook crosses midnight."""
    return moment.strftime("%H:%M" if plan.start.date() == plan.end.date() else "%m-%d %H:%M")


def _span(minutes: int) -> str:
    return format_span(timedelta(minutes=minutes))
