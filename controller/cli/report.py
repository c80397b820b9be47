"""``relctl report RELEASE``: the release's report for people and pipelines."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.markup import escape

from controller.cli.context import AppContext
from controller.cli.output import console, write_output
from controller.errors import InputError
from controller.reports.release_report import FORMATS, Format, ReleaseFacts, junit_xml, render


@click.command()
@click.argument("release")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="markdown",
              show_default=True, help="html: one self-contained page with charts.")
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the report to this file instead of stdout.")
@click.option("--junit", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write every gate as JUnit XML here (for CI systems).")
@click.pass_obj
def report(app: AppContext, release: str, fmt: Format, as_json: bool, output: Path | None,
           junit: Path | None) -> None:
    """Report on RELEASE (a name or id) from the journal: outcome, gates, the Locust
    baseline against the candidate, each host's timeline, phases, events.

    \b
    Examples:
      relctl report billing-2.4.0 --format html -o report.html --junit gates.xml
      relctl report 7 --json
    Exit codes: 0 written, 2 no such release.
    """
    journal = app.journal()
    record = journal.find_release(release)
    if record is None:
        raise InputError(f"no release {release!r} in the journal {journal.where}",
                         hint="relctl history lists them")
    facts = ReleaseFacts.read(journal, record)
    text = render(facts, "json" if as_json else fmt)
    if junit is not None:
        write_output(junit, junit_xml(facts))
    if output is None:
        sys.stdout.write(text)
    else:
        write_output(output, text)
        console.print(escape(f"report of {record.name} written to {output}"
                             + (f"; gates as JUnit XML in {junit}" if junit else "")))
