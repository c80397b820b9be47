"""Entry point of the ``relctl`` command."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO, Any

import click

from controller import __version__
from controller.cli.context import AppContext
from controller.cli.continuity import CONTINUITY_COMMANDS
from controller.cli.init import init
from controller.cli.journal import journal_group
from controller.cli.lab import lab as lab_group
from controller.cli.monitor import monitor
from controller.cli.notice import notice
from controller.cli.output import report_error
from controller.cli.plan import plan
from controller.cli.release import RELEASE_COMMANDS
from controller.cli.report import report
from controller.cli.serve import serve
from controller.cli.signoff import signoff
from controller.engine.environment import JOURNAL_ENV
from controller.errors import ExitCode, RelctlError
from controller.paths import STATE_DIR_ENV, default_state_dir

EXIT_CODES_HELP = """\b
Exit codes:
  0 success            2 invalid input       3 rolled back
  4 rollback failed    5 locked              6 missing prerequisite
  7 lab or journal database unreachable
  8 playbook failed    9 failover/failback failed
  10 drill missed a target                   11 sign-off missing
  1 unexpected error"""


class RelctlGroup(click.Group):
    """A click group that turns ``RelctlError`` into a message and its exit code, and a
    bad option into one line (``error: Invalid value for '--start': ...``), exit 2."""

    def make_context(self, info_name: str | None, args: list[str],
                     parent: click.Context | None = None, **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as error:  # a bad top-level option
            raise _one_line(error) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RelctlError as error:
            report_error(error, as_json=_wants_json())
            sys.exit(int(error.exit_code))
        except click.UsageError as error:  # a bad option of a command
            raise _one_line(error) from None


class OneLineUsageError(click.UsageError):
    """A usage error shown as one line (click's own adds the usage and a blank line)."""

    def show(self, file: IO[Any] | None = None) -> None:
        command = self.ctx.command_path if self.ctx is not None else "relctl"
        click.echo(f"error: {self.format_message()} (see: {command} --help)",
                   file=file or sys.stderr)


def _one_line(error: click.UsageError) -> click.UsageError:
    if isinstance(error, OneLineUsageError):
        return error
    return OneLineUsageError(error.format_message(), error.ctx)  # exit 2, as click's


def _wants_json() -> bool:
    return "--json" in sys.argv[1:]


@click.group(cls=RelctlGroup, epilog=EXIT_CODES_HELP, context_settings={"max_content_width": 100})
@click.version_option(__version__, prog_name="relctl")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar=STATE_DIR_ENV,
    default=None,
    help=f"Where relctl keeps the lab, journal and snapshots [env {STATE_DIR_ENV}; "
    "default ~/.local/state/relctl].",
)
@click.option(
    "--journal",
    metavar="PATH|URL",
    envvar=JOURNAL_ENV,
    default=None,
    help="The release journal: an SQLite file (PATH or sqlite:PATH), or a PostgreSQL "
    "database shared by several controllers (postgresql://USER:PASSWORD@HOST/DB) "
    f"[env {JOURNAL_ENV}; default STATE_DIR/journal.sqlite].",
)
@click.pass_context
def cli(ctx: click.Context, state_dir: Path | None, journal: str | None) -> None:
    """relctl: release and continuity controller for Ansible-managed fleets.

    Snapshots every configuration item, applies playbooks in safe batches, verifies with
    testinfra and Locust gates, rolls back on failure, and fails over to backup hosts.
    """
    ctx.obj = AppContext((state_dir or default_state_dir()).absolute(), journal)


cli.add_command(init)
cli.add_command(lab_group)
cli.add_command(journal_group)
cli.add_command(plan)
cli.add_command(notice)
cli.add_command(signoff)
cli.add_command(monitor)
cli.add_command(report)
cli.add_command(serve)
for command in [*RELEASE_COMMANDS, *CONTINUITY_COMMANDS]:
    cli.add_command(command)


def main() -> None:
    """Console-script entry point."""
    try:
        cli(prog_name="relctl")
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(int(ExitCode.ERROR))
