"""The drill's HTML page: self-contained, escaped, the probe's timeline with its moments,
a missed target shown as missed (the targets judged from the example plan)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from controller.engine.continuity import load_plan
from controller.engine.drill.runner import probe_series
from controller.planning.continuity import judge_targets
from controller.reports.drill_html import drill_html

PLAN = Path(__file__).resolve().parents[2] / "examples" / "continuity" / "ledger-lab.yml"


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def report(recovered: dict[str, float | None], **extra: Any) -> dict[str, Any]:
    plan, _ = load_plan(PLAN)
    started = 1000.0  # monotonic: the probe fails from 3.2 s to 3.5 s, primary then backup
    samples = [(started + i * 0.05, not 64 <= i < 70, "primary-1" if i < 64 else "backup-1")
               for i in range(160)]
    return {"id": 4, "scenario": "site-loss", "fault": "every primary host lost",
            "service": "ledger", "environment": "lab", "started": "2026-11-22T12:00:00+00:00",
            "verdict": "pass", "release": "ledger-1.1.0", "mode": "lab",
            "measures": {"rto_s": 0.31, "load_failures": 3, "served_by_after": ["backup-1"]},
            "targets": [t.__dict__ for t in judge_targets(plan, recovered, 1.5)],
            "timeline": [(0.0, "drill 4 started"), (3.2, "fault injected")],
            "problems": ["<script>alert(1)</script> in a host name"], "improvements": [],
            "probe": probe_series(samples, started),
            "moments": {"fault_s": 3.2, "detected_s": 3.4, "switch_s": 3.45,
                        "recovered_s": 3.51}, **extra}


def test_the_page_marks_the_moments_and_the_failed_requests() -> None:
    page = drill_html(report({"record-transactions": 0.3, "service-health": 0.31}))
    parser = Tags()
    parser.feed(page)
    markers = {a.get("data-moment") for t, a in parser.tags if t == "line"} - {None}
    assert markers == {"fault", "detected", "switch", "recovered"}
    failed = [a for t, a in parser.tags if t == "rect" and a.get("class") == "failed"]
    assert failed, "the half second with failed probes has a red bar"
    assert "backup-1" in page and "primary-1" in page
    # self-contained: no script, no external resource (the SVG namespace is not a fetch)
    assert not any(t == "script" for t, _ in parser.tags)
    assert not re.search(r"(src|href)=", page)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_a_missed_rto_shows_as_missed_and_old_reports_still_render() -> None:
    page = drill_html(report({"record-transactions": 42.0, "service-health": 0.4},
                             verdict="missed"))
    rows = re.findall(r"<tr><td>record-transactions</td>.*?</tr>", page)
    assert rows and "MISSED" in rows[0]
    old = report({"record-transactions": 1.0, "service-health": 1.0})
    del old["probe"], old["moments"]
    assert "No probe samples" in drill_html(old)
