"""What a rollback did with each host's data: kept live, restored with every later row
carried, or restored with later rows dropped; and every row it could not carry, with why.

The engine writes it as ``STATE_DIR/rollbacks/<release>/catch-up.{md,json}``; ``show``,
``--json`` and the release report carry the same record (the rollback phase's ``data``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from controller.reports.document import Block, Heading, Paragraph, Table, to_markdown

# host -> data item -> the agent's report (decision, why, tables, listed, not_carried)
DataReports = dict[str, dict[str, dict[str, Any]]]


def rollback_detail(phases: Sequence[Any]) -> dict[str, Any]:
    """The detail of the latest rollback phase that recorded data (``data``,
    ``writes_refused_s``), or an empty dict; ``phases``: the journal's phase records."""
    return next((dict(p.detail) for p in reversed(phases)
                 if p.name == "rollback" and p.detail.get("data")), {})


def carried_total(report: dict[str, Any], outcome: str) -> int:
    """Rows with ``outcome`` (carried, not-carried, dropped) in one item's report."""
    return sum(n for per in report.get("tables", {}).values()
               for key, n in per.items() if key.endswith(f":{outcome}"))


def summary_lines(data: DataReports) -> list[str]:
    """One line per host and data item, for the terminal and the journal."""
    lines = []
    for host, items in sorted(data.items()):
        for name, report in sorted(items.items()):
            decision = report.get("decision", "?")
            line = f"{name} on {host}: {decision} ({report.get('why', '')})"
            if decision in ("carried", "discarded"):
                line += (f"; rows carried {carried_total(report, 'carried')}, "
                         f"not carried {report.get('not_carried', 0)}, "
                         f"dropped {carried_total(report, 'dropped')}")
            lines.append(line)
    return lines


def blocks(data: DataReports, writes_refused: dict[str, float | None]) -> list[Block]:
    """The catch-up as report blocks (shared by catch-up.md and the release report)."""
    out: list[Block] = [Heading(2, "Data at rollback"), Table(
        ["Host", "Item", "Decision", "Why", "Carried", "Not carried", "Dropped",
         "Writes refused (s)"],
        [[host, name, str(r.get("decision")), str(r.get("why", "")),
          str(carried_total(r, "carried")), str(r.get("not_carried", 0)),
          str(carried_total(r, "dropped")), _seconds(writes_refused.get(host))]
         for host, items in sorted(data.items()) for name, r in sorted(items.items())])]
    listed = [[host, name, row["table"], row["op"], json.dumps(row["row"], default=str),
               row["reason"]]
              for host, items in sorted(data.items()) for name, r in sorted(items.items())
              for row in r.get("listed", [])]
    if listed:
        out += [Heading(3, "Rows not carried or dropped"),
                Paragraph("Each row written after the snapshot that the rollback did not keep, "
                          "with the reason; re-enter them by hand if they must stay."),
                Table(["Host", "Item", "Table", "Change", "Row", "Reason"], listed)]
    return out


def write_catch_up(folder: Path, release: str, data: DataReports,
                   writes_refused: dict[str, float | None]) -> Path:
    """``catch-up.md`` and ``catch-up.json`` in ``folder`` (0700); the Markdown's path."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    document = [Heading(1, f"Rollback catch-up: {release}"), *blocks(data, writes_refused)]
    markdown = folder / "catch-up.md"
    _write_private(markdown, to_markdown(document))
    _write_private(folder / "catch-up.json", json.dumps(
        {"release": release, "data": data, "writes_refused_s": writes_refused},
        indent=2, default=str) + "\n")
    return markdown


def _write_private(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.unlink(missing_ok=True)
    partial.touch(mode=0o600)
    partial.write_text(text)
    partial.replace(path)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
