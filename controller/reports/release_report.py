"""The report of one release, from the journal: for managers (HTML with charts, Markdown)
and for pipelines (JSON, and JUnit XML of every gate).

    facts = ReleaseFacts.read(journal, record)    what the journal holds about the release
    render(facts, "html" | "markdown" | "json")   the report
    junit_xml(facts)                              every gate as a test case

Charts are SVG drawn here (no script, no network): the Locust latency percentiles of the
baseline against the candidate, and each host's timeline through the release's phases.
"""

from __future__ import annotations

import html
import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from controller.journal import (
    GateRecord,
    HostStateRecord,
    Journal,
    PhaseRecord,
    ReleaseRecord,
    SignoffRecord,
)
from controller.reports import catch_up
from controller.reports.document import (
    Block,
    Figure,
    Heading,
    Paragraph,
    Table,
    to_html,
    to_markdown,
)

Format = Literal["html", "markdown", "json"]
FORMATS: tuple[Format, ...] = ("html", "markdown", "json")
PERCENTILES = ("p50_ms", "p95_ms", "p99_ms")
BASELINE_COLOUR, CANDIDATE_COLOUR = "#4c78a8", "#f58518"
PHASE_COLOURS = {"snapshot": "#72b7b2", "apply": "#b279a2", "gate": "#54a24b",
                 "rollback": "#e45756", "baseline": "#bab0ac"}


@dataclass(frozen=True)
class ReleaseFacts:
    """Everything the journal knows about one release."""

    record: ReleaseRecord
    phases: list[PhaseRecord]
    hosts: list[HostStateRecord]
    gates: list[GateRecord]
    signoffs: list[SignoffRecord]
    events: list[str]

    @classmethod
    def read(cls, journal: Journal, record: ReleaseRecord) -> ReleaseFacts:
        return cls(record, journal.phases(record.id), journal.host_states(record.id),
                   journal.gate_results(record.id), journal.signoffs(record.name),
                   [e.message for e in journal.events(record.id)])

    @property
    def load(self) -> GateRecord | None:
        """The Locust gate's verdict with both runs' figures, if one ran."""
        return next((g for g in self.gates if g.kind == "locust"
                     and not g.phase.startswith("canary:")), None)

    def batch_hosts(self) -> dict[str, list[str]]:
        """Which hosts each batch label (canary, batch2, ...) covered."""
        return {p.name.split(":", 1)[1]: sorted(p.detail.get("hosts", {}))
                for p in self.phases if p.name.startswith("apply:")}


def render(facts: ReleaseFacts, fmt: Format) -> str:
    """The report in ``fmt``."""
    if fmt == "json":
        return json.dumps(report_dict(facts), indent=2, default=str) + "\n"
    blocks = document(facts)
    if fmt == "html":
        return to_html(blocks, f"Release report {facts.record.name}")
    return to_markdown(blocks)


def report_dict(facts: ReleaseFacts) -> dict[str, Any]:
    r = facts.record
    return {
        "release": r.name, "id": r.id, "version": r.version, "service": r.service,
        "environment": r.environment, "state": r.state, "bad": r.bad,
        "exit_code": r.exit_code, "message": r.message, "operator": str(r.operator),
        "started": r.started.isoformat(), "ended": r.ended.isoformat() if r.ended else None,
        "phases": [{"name": p.name, "state": p.state, "seconds": p.seconds,
                    "started": p.started.isoformat()} for p in facts.phases],
        "hosts": [{"host": h.host, "state": h.state, "before": h.version_before,
                   "after": h.version_after} for h in facts.hosts],
        "gates": [{"phase": g.phase, "kind": g.kind, "verdict": g.verdict,
                   "figures": g.figures} for g in facts.gates],
        "signoffs": [{"role": s.role, "by": s.by, "time": s.time.isoformat()}
                     for s in facts.signoffs],
        "data_at_rollback": catch_up.rollback_detail(facts.phases).get("data", {}),
    }


# --- the document -------------------------------------------------------------------------


def document(facts: ReleaseFacts) -> list[Block]:
    r = facts.record
    blocks: list[Block] = [
        Heading(1, f"Release report: {r.name}"),
        Paragraph(f"{r.service} {r.version} in {r.environment}: {r.state.upper()}"
                  f"{' (marked bad)' if r.bad else ''}. {r.message or ''}"),
        Table(["Field", "Value"], [
            ["Started", _when(r.started)], ["Ended", _when(r.ended)],
            ["Duration", _seconds(_duration(r.started, r.ended))],
            ["Run by", str(r.operator)], ["Exit code", str(r.exit_code)],
            ["Sign-offs", ", ".join(f"{s.role}: {s.by}" for s in facts.signoffs)
             or "none recorded"],
        ]),
        Heading(2, "Gates"),
        Table(["Phase", "Gate", "Verdict", "Figures"],
              [[g.phase, g.kind, g.verdict.upper(), _gate_summary(g)] for g in facts.gates]),
    ]
    for gate in facts.gates:  # each canary analysis step: the canary against the old hosts
        canary, old = gate.figures.get("candidate"), gate.figures.get("baseline")
        if gate.phase.startswith("canary:") and isinstance(canary, dict) and canary:
            blocks += [Heading(2, f"Canary analysis, {gate.phase.split(':', 1)[1]}: "
                                  f"{gate.verdict.upper()}"),
                       latency_figure(old, canary, WINDOW_CAPTION if gate.figures.get(
                           "compare") == "window-before" else CANARY_CAPTION)]
    load = facts.load
    if load is not None and load.figures.get("candidate"):
        blocks += [Heading(2, "Performance: baseline against candidate"),
                   latency_figure(load.figures.get("baseline"), load.figures["candidate"])]
    blocks += [Heading(2, "Per-host timeline"), timeline_figure(facts),
               Heading(2, "Hosts"),
               Table(["Host", "State", "Version before", "Version after (runs now)"],
                     [[h.host, h.state, h.version_before or "-", h.version_after or "-"]
                      for h in facts.hosts]),
               Heading(2, "Phases"),
               Table(["Phase", "State", "Started", "Seconds"],
                     [[p.name, p.state, _when(p.started), _seconds(p.seconds)]
                      for p in facts.phases])]
    rolled = catch_up.rollback_detail(facts.phases)
    if rolled:
        blocks += catch_up.blocks(rolled["data"], rolled.get("writes_refused_s") or {})
    if facts.events:
        blocks += [Heading(2, "Events"), Table(["Event"], [[e] for e in facts.events])]
    return blocks


def _gate_summary(gate: GateRecord) -> str:
    f = gate.figures
    if gate.phase.startswith("canary:"):
        c, b, lat = f.get("candidate") or {}, f.get("baseline") or {}, f.get("latency") or {}
        text = (f"canary p50 {c.get('p50_ms')} ms ({c.get('requests', 0)} requests) against "
                f"old p50 {b.get('p50_ms')} ms ({b.get('requests', 0)}); effect "
                f"{lat.get('effect', '-')}, p {lat.get('p', '-')}; weight {f.get('weight')}")
    elif gate.kind == "locust":
        c = f.get("candidate") or {}
        text = (f"p95 {c.get('p95_ms', 0):.0f} ms, {c.get('rps', 0):.1f} rps, "
                f"failures {c.get('failure_ratio', 0):.2%}")
    else:
        text = (f"{f.get('tests', 0)} checks, {f.get('failures', 0)} failed on "
                f"{', '.join(f.get('hosts', []))}")
    reasons = "; ".join(f.get("reasons", [])[:3])
    return f"{text}. {reasons}" if reasons and gate.verdict != "pass" else text


# --- charts -------------------------------------------------------------------------------


CANARY_CAPTION = ("Latency percentiles, ms, in the same seconds: the hosts still on the old "
                  "release (baseline) and the canary (candidate), as the load balancer "
                  "attributed each request")
WINDOW_CAPTION = ("Latency percentiles, ms: the old release in the window taken just before "
                  "the canary's change (baseline), and the canary taking all the traffic "
                  "(candidate)")


def latency_figure(baseline: dict[str, Any] | None, candidate: dict[str, Any],
                   caption: str | None = None) -> Figure:
    """Grouped bars: p50/p95/p99 of the baseline and the candidate."""
    runs = [("baseline", baseline or {}, BASELINE_COLOUR), ("candidate", candidate,
                                                             CANDIDATE_COLOUR)]
    top = max([float(run.get(p, 0) or 0) for _, run, _ in runs for p in PERCENTILES] + [1.0])
    width, height, left, bottom, group = 660, 260, 60, 30, 160
    parts = [_axis(left, height - bottom, width, top)]
    for index, percentile in enumerate(PERCENTILES):
        x0 = left + 20 + index * group
        for offset, (name, run, colour) in enumerate(runs):
            value = float(run.get(percentile, 0) or 0)
            bar = (height - bottom - 20) * value / top
            x = x0 + offset * 55
            parts.append(f'<rect class="bar {name}" x="{x}" y="{height - bottom - bar:.1f}" '
                         f'width="50" height="{bar:.1f}" fill="{colour}">'
                         f"<title>{name} {percentile[:-3]} {value:.0f} ms</title></rect>")
            parts.append(_text(x + 25, height - bottom - bar - 4, f"{value:.0f}", "middle"))
        parts.append(_text(x0 + 52, height - 10, percentile[:-3], "middle"))
    parts += _legend(width - 110, 30, [(n, c) for n, _, c in runs])
    svg = _svg(width, height, "Latency percentiles (ms)", parts)
    rows = [[p[:-3], f"{float((baseline or {}).get(p, 0) or 0):.0f}",
             f"{float(candidate.get(p, 0) or 0):.0f}"] for p in PERCENTILES]
    return Figure(caption or "Latency percentiles through the load balancer, ms: baseline "
                  "(before the change) and candidate (after it)", svg,
                  Table(["Percentile", "Baseline ms", "Candidate ms"], rows))


def timeline_figure(facts: ReleaseFacts) -> Figure:
    """One row per host: the phases that covered it, on the release's clock."""
    start = facts.record.started
    spans = host_spans(facts)
    hosts = sorted(spans)
    end = max([s[2] for rows in spans.values() for s in rows] + [1.0])
    width, row, left = 760, 26, 110
    height = 60 + row * len(hosts)
    scale = (width - left - 20) / end
    parts = [_text(left, 14, f"seconds since {_when(start)}", "start")]
    for index, host in enumerate(hosts):
        y = 24 + index * row
        parts.append(_text(left - 6, y + 15, host, "end"))
        for name, begin, finish in spans[host]:
            colour = PHASE_COLOURS.get(name.split(":")[0], "#9d755d")
            parts.append(f'<rect class="phase" x="{left + begin * scale:.1f}" y="{y}" '
                         f'width="{max(2.0, (finish - begin) * scale):.1f}" height="{row - 6}" '
                         f'fill="{colour}"><title>{html.escape(name)}: {begin:.1f}-'
                         f"{finish:.1f} s</title></rect>")
    parts.append(_text(width - 20, height - 24, f"{end:.0f} s", "end"))
    kinds = [(kind, colour) for kind, colour in PHASE_COLOURS.items() if kind != "baseline"]
    for index, (kind, colour) in enumerate(kinds):
        x = left + index * 110
        parts.append(f'<rect x="{x}" y="{height - 14}" width="12" height="12" '
                     f'fill="{colour}"/>')
        parts.append(_text(x + 18, height - 4, kind, "start"))
    svg = _svg(width, height, "Per-host timeline", parts)
    rows = [[host, name, f"{begin:.1f}", f"{finish:.1f}"]
            for host in hosts for name, begin, finish in spans[host]]
    return Figure("Each host's phases (snapshot, apply, gates, rollback), seconds since the "
                  "release started", svg, Table(["Host", "Phase", "From s", "To s"], rows))


def host_spans(facts: ReleaseFacts) -> dict[str, list[tuple[str, float, float]]]:
    """For each host: (phase, start s, end s) of every phase that covered it."""
    start = facts.record.started
    everyone = [h.host for h in facts.hosts]
    batches = facts.batch_hosts()
    spans: dict[str, list[tuple[str, float, float]]] = {h: [] for h in everyone}
    for phase in facts.phases:
        covered = covered_hosts(phase, everyone, batches)
        begin = (phase.started - start).total_seconds()
        finish = begin + (phase.seconds or 0.0)
        for host in covered:
            spans.setdefault(host, []).append((phase.name, begin, finish))
    return spans


def covered_hosts(phase: PhaseRecord, everyone: list[str],
                  batches: dict[str, list[str]]) -> list[str]:
    """The hosts ``phase`` works on: the snapshot covers every host; another phase those
    its detail names (journaled as it starts, and as it ends); a testinfra gate whose
    detail names none, its batch's."""
    kind, _, label = phase.name.partition(":")
    if kind == "snapshot":
        return everyone
    named = phase.detail.get("hosts")
    if isinstance(named, dict | list):
        return sorted(str(h) for h in named)
    if kind == "gate" and label.startswith("testinfra:"):
        return batches.get(label.split(":", 1)[1], [])
    return []


def _svg(width: int, height: int, title: str, parts: list[str]) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" '
            f'height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" '
            f'font-size="12"><title>{html.escape(title)}</title>{"".join(parts)}</svg>')


def _text(x: float, y: float, text: str, anchor: str) -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}">'
            f"{html.escape(text)}</text>")


def _axis(left: int, base: int, width: int, top: float) -> str:
    return (f'<line x1="{left}" y1="{base}" x2="{width - 10}" y2="{base}" stroke="#333"/>'
            f'<line x1="{left}" y1="10" x2="{left}" y2="{base}" stroke="#333"/>'
            + _text(left - 6, 20, f"{top:.0f}", "end") + _text(left - 6, base, "0", "end"))


def _legend(x: int, y: int, entries: list[tuple[str, str]]) -> list[str]:
    parts = []
    for index, (name, colour) in enumerate(entries):
        parts.append(f'<rect x="{x}" y="{y + index * 18 - 10}" width="12" height="12" '
                     f'fill="{colour}"/>')
        parts.append(_text(x + 18, y + index * 18, name, "start"))
    return parts


# --- JUnit --------------------------------------------------------------------------------


def junit_xml(facts: ReleaseFacts) -> str:
    """Every gate of the release as JUnit XML: testinfra gates with their own test cases
    (from the JUnit files they kept), Locust gates as one case each."""
    suites = ET.Element("testsuites", name=f"relctl {facts.record.name}")
    for gate in facts.gates:
        suite = ET.SubElement(suites, "testsuite", name=f"{gate.kind}:{gate.phase}")
        cases = _kept_cases(gate) if gate.kind == "testinfra" else []
        if not cases:
            case = ET.Element("testcase", classname=f"relctl.{gate.kind}", name=gate.phase)
            if gate.verdict != "pass":
                failure = ET.SubElement(case, "failure", message=gate.verdict)
                failure.text = "\n".join(gate.figures.get("reasons", []))
            cases = [case]
        for case in cases:
            suite.append(case)
        failed = sum(1 for c in cases if c.find("failure") is not None
                     or c.find("error") is not None)
        suite.set("tests", str(len(cases)))
        suite.set("failures", str(failed))
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def _kept_cases(gate: GateRecord) -> list[ET.Element]:
    if gate.junit is None or not gate.junit.exists():
        return []
    try:
        return list(ET.parse(gate.junit).getroot().iter("testcase"))
    except ET.ParseError:
        return []


# --- small formats ------------------------------------------------------------------------


def _when(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds").replace("T", " ") if moment else "-"


def _duration(start: datetime, end: datetime | None) -> float | None:
    return (end - start).total_seconds() if end else None


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"
