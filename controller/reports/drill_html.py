"""A drill report as one self-contained HTML page: no script, no external file, inline
CSS and SVG. What people read after a drill: the verdict, the targets per critical
function, the measures, and the probe's timeline (requests over time, fault, detection,
switch and recovery marked). Every value from the report is escaped: plans and hosts
are user input.
"""

from __future__ import annotations

from collections import Counter
from html import escape
from typing import Any

BUCKET_S = 0.5
WIDTH, CHART_H, STRIP_H, LEFT, TOP = 900, 160, 14, 44, 56
MARKERS = (("fault_s", "fault", "#b91c1c"), ("detected_s", "detected", "#c2410c"),
           ("switch_s", "switch", "#1d4ed8"), ("recovered_s", "recovered", "#15803d"))
SERVER_COLOURS = ("#2563eb", "#9333ea", "#0d9488", "#ca8a04", "#db2777", "#4b5563")
STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#111;max-width:60em}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;
padding:.25em .6em;text-align:left}th{background:#f3f4f6}.pass{color:#15803d}
.missed{color:#c2410c}.fail{color:#b91c1c}.num{text-align:right}svg text{font-size:11px}
"""


def drill_html(report: dict[str, Any]) -> str:
    """The whole page for one drill report (the dict the journal keeps)."""
    verdict = str(report.get("verdict", "?"))
    title = f"Drill {report.get('id')}: {report.get('scenario')} — {verdict.upper()}"
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>",
        f'<h1>{escape(title.rsplit(" — ", 1)[0])} — '
        f'<span class="{_css(verdict)}">{escape(verdict.upper())}</span></h1>',
        _facts(report), "<h2>Targets per critical function</h2>", _targets(report),
        "<h2>Requests seen by relctl's probe</h2>", _chart(report),
        "<h2>Measures</h2>", _measures(report.get("measures") or {}),
        "<h2>Timeline</h2>", _timeline(report.get("timeline") or []),
        _list("Problems", report.get("problems") or []),
        _list("Improvements", report.get("improvements") or []), "</body></html>"]
    return "\n".join(p for p in parts if p) + "\n"


def _css(verdict: str) -> str:
    return verdict if verdict in ("pass", "missed", "fail") else ""


def _facts(report: dict[str, Any]) -> str:
    rows = [("Service", f"{report.get('service')} in {report.get('environment')}"),
            ("Fault", report.get("fault")), ("Started", report.get("started")),
            ("Release running", report.get("release") or "unknown"),
            ("Where", report.get("mode", "lab"))]
    return _table(["", ""], [[k, v] for k, v in rows], header=False)


def _seconds(value: Any) -> str:
    return "—" if value is None else f"{float(value):.3f} s"


def _targets(report: dict[str, Any]) -> str:
    rows = []
    for t in report.get("targets") or []:
        rows.append([t.get("function"), t.get("priority"), _seconds(t.get("rto_target_s")),
                     _seconds(t.get("rto_s")), _met(t.get("rto_met")),
                     _seconds(t.get("rpo_target_s")), _seconds(t.get("rpo_s")),
                     _met(t.get("rpo_met"))])
    return _table(["function", "priority", "RTO target", "RTO measured", "RTO",
                   "RPO target", "RPO measured", "RPO"], rows)


def _met(value: Any) -> Markup:
    return Markup('<span class="pass">met</span>' if value
                  else '<span class="fail">MISSED</span>')


def _measures(measures: dict[str, Any]) -> str:
    rows = [[k, ", ".join(map(str, v)) if isinstance(v, list) else v]
            for k, v in sorted(measures.items()) if not isinstance(v, dict)]
    return _table(["measure", "value"], rows)


def _timeline(events: list[Any]) -> str:
    return _table(["t (s)", "event"], [[f"{float(at):.3f}", what] for at, what in events])


def _list(title: str, items: list[Any]) -> str:
    if not items:
        return ""
    return f"<h2>{escape(title)}</h2><ul>" + "".join(
        f"<li>{escape(str(i))}</li>" for i in items) + "</ul>"


class Markup(str):
    """HTML that relctl wrote itself (not escaped again)."""


def _table(headers: list[str], rows: list[list[Any]], header: bool = True) -> str:
    head = ("<tr>" + "".join(f"<th>{escape(h)}</th>" for h in headers) + "</tr>"
            if header else "")
    body = "".join("<tr>" + "".join(
        f"<td>{c if isinstance(c, Markup) else escape(str(c))}</td>" for c in row) + "</tr>"
        for row in rows)
    return f"<table>{head}{body}</table>"


def _chart(report: dict[str, Any]) -> str:
    """Stacked bars of the probe's answers per half second (ok green, failed red), a strip
    of the server that answered most in each, and the drill's moments as lines."""
    samples = (report.get("probe") or {}).get("samples") or []
    moments = report.get("moments") or {}
    if not samples:
        return "<p>No probe samples in this report (older drills did not keep them).</p>"
    end = max(float(s[0]) for s in samples)
    end = max([end, *(float(v) for v in moments.values() if v is not None)]) + BUCKET_S
    buckets: dict[int, list[Any]] = {}
    for at, ok, server in samples:
        buckets.setdefault(int(float(at) // BUCKET_S), []).append((int(ok), str(server)))
    peak = max(len(v) for v in buckets.values())
    plot_w = WIDTH - LEFT - 10
    scale = plot_w / end

    def x(seconds: float) -> float:
        return LEFT + seconds * scale

    servers = sorted({str(s[2]) for s in samples if s[2]})
    colour = {s: SERVER_COLOURS[i % len(SERVER_COLOURS)] for i, s in enumerate(servers)}
    bar_w = max(1.0, BUCKET_S * scale - 1)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" '
           f'height="{TOP + CHART_H + STRIP_H + 40}" role="img" '
           f'aria-label="probe requests over time">']
    base = TOP + CHART_H
    out.append(f'<line x1="{LEFT}" y1="{base}" x2="{LEFT + plot_w}" y2="{base}" '
               'stroke="#444"/>')
    out.append(f'<text x="2" y="{TOP + 10}">{peak}/{BUCKET_S:g}s</text>')
    for index, answers in sorted(buckets.items()):
        good = sum(ok for ok, _ in answers)
        bad = len(answers) - good
        left = x(index * BUCKET_S)
        h_good, h_bad = CHART_H * good / peak, CHART_H * bad / peak
        out.append(f'<rect class="ok" x="{left:.1f}" y="{base - h_good:.1f}" '
                   f'width="{bar_w:.1f}" height="{h_good:.1f}" fill="#4ade80"/>')
        if bad:
            out.append(f'<rect class="failed" x="{left:.1f}" y="{base - h_good - h_bad:.1f}" '
                       f'width="{bar_w:.1f}" height="{h_bad:.1f}" fill="#ef4444"/>')
        top = Counter(s for ok, s in answers if ok and s).most_common(1)
        if top:
            out.append(f'<rect x="{left:.1f}" y="{base + 4}" width="{bar_w:.1f}" '
                       f'height="{STRIP_H - 4}" fill="{colour[top[0][0]]}">'
                       f'<title>{escape(top[0][0])}</title></rect>')
    for tick in range(0, int(end) + 1, max(1, int(end) // 10 or 1)):
        out.append(f'<text x="{x(tick):.1f}" y="{base + STRIP_H + 14}">{tick}s</text>')
    for row, (key, label, stroke) in enumerate(MARKERS):
        at = moments.get(key)
        if at is not None:
            out.append(f'<line class="marker" data-moment="{label}" x1="{x(float(at)):.1f}" '
                       f'y1="{12 + row * 12}" x2="{x(float(at)):.1f}" y2="{base}" '
                       f'stroke="{stroke}" stroke-dasharray="4 2"/><text '
                       f'x="{x(float(at)) + 2:.1f}" y="{10 + row * 12}" fill="{stroke}">'
                       f'{label} {float(at):.2f}s</text>')
    out.append("</svg>")
    legend = " ".join(f'<span style="color:{colour[s]}">■ {escape(s)}</span>' for s in servers)
    return ("".join(out) + f"<p>Green: answered; red: failed (per {BUCKET_S:g} s). Strip: the "
            f"server that answered. {legend}</p>")
