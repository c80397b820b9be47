"""``relctl journal``: the journal itself (``migrate``: copy it to another database)."""

from __future__ import annotations

import click
from rich.table import Table

from controller.cli.context import AppContext
from controller.cli.output import JSON_OPTION, console, emit_json
from controller.journal import CopyReport, Journal, copy_journal


@click.group(name="journal")
def journal_group() -> None:
    """The release journal itself: copy it from SQLite to a shared PostgreSQL."""


@journal_group.command()
@click.option("--from", "source", metavar="PATH|URL", default=None,
              help="The journal to copy: sqlite:PATH, a path or a URL "
              "[default: the current one, --journal or STATE_DIR/journal.sqlite].")
@click.option("--to", "target", metavar="URL", required=True,
              help="The journal to copy into, created if needed and empty: "
              "postgresql://USER:PASSWORD@HOST/DB (or sqlite:PATH).")
@JSON_OPTION
@click.pass_obj
def migrate(app: AppContext, source: str | None, target: str, as_json: bool) -> None:
    """Copy every row of the journal --from into the empty journal --to, then check
    that every table holds as many rows in both.

    \b
    Refused, nothing copied: while a release holds a lock (exit 5), or when --to holds
    rows already (exit 2). Exit 7 when a database cannot be reached.
    """
    with (Journal(source) if source else app.journal()) as old, Journal(target) as new:
        report = copy_journal(old, new)
    _render(report, as_json)


def _render(report: CopyReport, as_json: bool) -> None:
    if as_json:
        emit_json({"ok": True, "from": report.source, "to": report.target,
                   "rows": report.rows,
                   "counts": {t: found for t, (found, _) in report.counts.items()}})
        return
    table = Table(title=f"journal copied: {report.source} -> {report.target}")
    for column in ("table", "rows in source", "rows in target"):
        table.add_column(column)
    for name, (found, copied) in report.counts.items():
        table.add_row(name, str(found), str(copied))
    console.print(table)
    console.print(f"[green]{report.rows} rows copied, every count equal[/]")
