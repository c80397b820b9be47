"""A neutral report document (headings, paragraphs, tables, checklists, figures) and its
Markdown and self-contained HTML renderings, shared by every report relctl writes.

Every value is escaped for its format: ``|`` and markup characters in Markdown cells,
``html.escape`` for all HTML text. Figures are SVG that relctl draws itself; Markdown
shows their data as a table instead.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Table:
    headers: list[str]
    rows: list[list[str]]
    task: str | None = None
    """A checklist: one box per row; Markdown writes ``- [ ] `` + ``task.format(*row)``."""


@dataclass(frozen=True)
class Figure:
    """A chart: inline SVG in HTML; its data as ``fallback`` in Markdown."""

    caption: str
    svg: str
    fallback: Table


Block = Heading | Paragraph | Table | Figure


# --- Markdown -----------------------------------------------------------------------------


def to_markdown(blocks: list[Block]) -> str:
    """GitHub-flavoured Markdown; checklists become task lists (``- [ ]``)."""
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"{'#' * block.level} {_md(block.text)}")
        elif isinstance(block, Paragraph):
            parts.append(_md(block.text))
        elif isinstance(block, Figure):
            parts.append(f"*{_md(block.caption)}*\n\n{_md_table(block.fallback)}")
        elif block.task:
            parts.append("\n".join("- [ ] " + block.task.format(*map(_md, row))
                                    for row in block.rows))
        else:
            parts.append(_md_table(block))
    return "\n\n".join(parts) + "\n"


def _md_table(table: Table) -> str:
    lines = [_md_row(table.headers), _md_row(["---"] * len(table.headers))]
    return "\n".join(lines + [_md_row(row) for row in table.rows])


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(_md(c) for c in cells) + " |"


def _md(text: str) -> str:
    """``text`` safe in a Markdown table cell: code spans kept, markup characters escaped."""
    spans = text.replace("\n", " ").split("`")
    return "`".join(span.replace("|", "\\|") if inside % 2
                    else re.sub(r"([\\|<>*\[\]])", r"\\\1", span)
                    for inside, span in enumerate(spans))


# --- HTML ---------------------------------------------------------------------------------

CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:75em;color:#222}
table{border-collapse:collapse;margin:1em 0;width:100%}
th,td{border:1px solid #bbb;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#eee}td.box{font-size:1.2em;text-align:center}
code{background:#f4f4f4;padding:0 .2em}
figure{margin:1em 0}figcaption{color:#555;font-size:.9em}"""


def to_html(blocks: list[Block], title: str) -> str:
    """One self-contained HTML page (inline CSS, no scripts, every value escaped)."""
    body = html_blocks(blocks)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n"
            f"<body>\n{body}\n</body>\n</html>\n")


def html_blocks(blocks: list[Block]) -> str:
    """The blocks as HTML elements (a page's body, or part of one), every value escaped."""
    return "\n".join(_html_block(block) for block in blocks)


def _html_block(block: Block) -> str:
    if isinstance(block, Heading):
        return f"<h{block.level}>{_inline(block.text)}</h{block.level}>"
    if isinstance(block, Paragraph):
        return f"<p>{_inline(block.text)}</p>"
    if isinstance(block, Figure):
        return (f"<figure>{block.svg}<figcaption>{_inline(block.caption)}</figcaption>"
                "</figure>")
    box = ["&#9744;"] if block.task else []
    head = "".join(f"<th>{html.escape(h)}</th>" for h in ([""] if box else []) + block.headers)
    rows = ["<tr>" + "".join(f'<td class="box">{b}</td>' for b in box)
            + "".join(f"<td>{_inline(cell)}</td>" for cell in row) + "</tr>"
            for row in block.rows]
    return f"<table>\n<tr>{head}</tr>\n" + "\n".join(rows) + "\n</table>"


def _inline(text: str) -> str:
    """Escaped text, with Markdown's `code` spans kept as <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))
