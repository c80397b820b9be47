"""Continuity commands: replicate, failover, failback, drill."""

from __future__ import annotations

import inspect
import sys
import time
from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from controller.cli.context import AppContext
from controller.cli.output import (
    JSON_OPTION,
    console,
    emit_json,
    progress_printer,
    write_output,
)
from controller.cli.params import RECORD_ID
from controller.engine.continuity import Continuity, Outcome, failback, failover
from controller.engine.continuity.methods import replicate as replicate_data
from controller.engine.continuity.methods import replication_of
from controller.engine.continuity.preflight import Check
from controller.engine.drill import SCENARIOS, Drill, DrillPlan, plan_drill, restore_drill
from controller.engine.drill.test_failover import run_test_failover
from controller.engine.lab import Lab
from controller.errors import InputError
from controller.models.durations import parse_duration
from controller.reports.drill_html import drill_html
from controller.reports.drill_junit import drill_junit_xml

PLAN_ENV = "RELCTL_CONTINUITY_PLAN"

JUNIT_OPTION = click.option(
    "--junit", type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the drill as JUnit XML: a test case per critical function and target "
    "(RTO, RPO), failed requests, and the drill itself.")
PLAN_OPTION = click.option(
    "--plan", "plan_path", type=click.Path(path_type=Path), envvar=PLAN_ENV, required=True,
    help=f"The continuity plan (YAML) [env {PLAN_ENV}]; e.g. "
    "relctl/billing-continuity.yml.")
INVENTORY_OPTION = click.option(
    "--inventory", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
    help="Ansible inventory (default: the plan's, else the staging lab's).")


def _open(app: AppContext, plan_path: Path, inventory: Path | None,
          as_json: bool) -> Continuity:
    return Continuity.open(app.state_dir, plan_path, app.journal(), inventory,
                           progress_printer(as_json))


def _render(outcome: Outcome, as_json: bool) -> None:
    if as_json:
        emit_json(outcome.as_dict())
    else:
        colour = "green" if outcome.exit_code == 0 else "red"
        console.print(f"[bold {colour}]{outcome.kind} {outcome.record_id}[/]: "
                      f"{escape(outcome.message)}")
        for warning in outcome.warnings:
            console.print(f"[yellow]warning:[/] {escape(warning)}")
    sys.exit(outcome.exit_code)


@click.command()
@PLAN_OPTION
@INVENTORY_OPTION
@click.option("--every", default=None, metavar="DURATION",
              help="Repeat at this interval (30s, 5m) until interrupted; default: once. "
              "'plan' uses each data item's `every`.")
@click.option("--count", type=click.IntRange(1, 1_000_000), default=None,
              help="With --every: stop after this many replications.")
@click.option("--stop", is_flag=True,
              help="Stop the Litestream replication the plan's writer runs (litestream "
              "plans); nothing else changes.")
@JSON_OPTION
@click.pass_obj
def replicate(app: AppContext, plan_path: Path, inventory: Path | None, every: str | None,
              count: int | None, stop: bool, as_json: bool) -> None:
    """Replicate the plan's data from the primary to the backup site.

    \b
    copy (the default): a consistent copy is taken with SQLite's online backup API on
      the writer, fetched, checked (sha256) and loaded into every backup host while its
      service runs; a failover's RPO is the age of the newest copy.
    litestream (data[].litestream in the plan): Litestream is started on the writer
      (detached, pid file; kept running if it already runs) and streams every
      transaction to the plan's replica; each run reports whether it runs, the newest
      replicated transaction and the lag. A failover restores the newest state on the
      backup hosts; its RPO is the age of that transaction at the fault.
    postgresql (data[].engine: postgresql): the cluster on every backup host is made a
      streaming standby of the database's server (pg_basebackup -R, only where it is
      not one already; never over a primary holding the database), or checked; each
      run reports its state and lag. A failover promotes the first backup's standby.
    Every run is journaled. Exit 0 replicating, 2 bad plan or login, 7 a database server
    unreachable, 9 failed.
    """
    ctx = _open(app, plan_path, inventory, as_json)
    if stop:
        try:
            stopped = replication_of(ctx).stop()
        finally:
            ctx.close()
        if as_json:
            emit_json({"ok": True, "message": stopped})
        else:
            console.print(escape(stopped))
        return
    interval = None
    if every is not None:
        interval = (min(d.every for d in ctx.plan.data) if every == "plan"
                    else _duration(every, "--every"))
    done = 0
    try:
        while True:
            record = replicate_data(ctx)
            done += 1
            if as_json:
                emit_json({"ok": True, **record.as_dict()})
            else:
                console.print(_replicated(record.id, record.detail))
            if interval is None or (count is not None and done >= count):
                break
            time.sleep(interval)
    finally:
        ctx.close()


def _replicated(record: int, detail: dict[str, Any]) -> str:
    """One line per replication, as ``relctl replicate`` prints it."""
    if detail.get("method") == "litestream":
        lag = detail.get("lag_s")
        return (f"[green]replication {record}[/]: Litestream runs on {detail['source']} (pid "
                f"{detail.get('pid')}); newest replicated transaction "
                f"{detail.get('captured_at') or 'none yet'}; lag "
                f"{'unknown' if lag is None else f'{lag}s'}")
    return (f"[green]replication {record}[/]: {detail['bytes']} bytes from "
            f"{detail['source']} to {', '.join(detail['loaded_on'])} "
            f"(captured {detail['captured_at']})")


@click.command(name="failover")
@PLAN_OPTION
@INVENTORY_OPTION
@click.option("--preflight", type=click.Choice(["full", "fast"]), default=None,
              help="full: ssh + testinfra on the backup site before the switch; fast: HTTP "
              "health and version before, testinfra right after. Default: the plan's.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@JSON_OPTION
@click.pass_obj
def failover_command(app: AppContext, plan_path: Path, inventory: Path | None,
                     preflight: str | None, yes: bool, as_json: bool) -> None:
    """Move the service to the backup site; works with the primary site unreachable.

    \b
    1. the newest data is on the backup hosts: a copy loaded if not yet, Litestream's
       replica restored, or the PostgreSQL standby promoted (the plan's method);
    2. the backup hosts answer and run the last good release (deployed if not);
    3. HAProxy's runtime API puts the primaries in maintenance: no reload, no
       dropped connections; the change is persisted in HAProxy's server-state file;
    4. every critical function is verified through the LB, most urgent first.
    First, a preflight: the LB has the plan's backend and servers, the backup hosts
    answer, their versions can be read, the last good release's playbooks match them
    (exit 2 when a check fails: nothing switched). RTO and RPO are recorded in the
    journal. Exit 0 done, 9 failed (a human must act).
    """
    ctx = _open(app, plan_path, inventory, as_json)
    if not (yes or as_json or not sys.stdin.isatty()):
        click.confirm(f"Fail {ctx.plan.service} over to {', '.join(ctx.site.backups)}?", abort=True)
    _render(failover(ctx, preflight=preflight), as_json)


@click.command(name="failback")
@PLAN_OPTION
@INVENTORY_OPTION
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@JSON_OPTION
@click.pass_obj
def failback_command(app: AppContext, plan_path: Path, inventory: Path | None, yes: bool,
                     as_json: bool) -> None:
    """Bring the primary site back with the backup's data, and report what to re-enter.

    The old primary's data is captured first; the primaries are put on the last good
    release and loaded with the backup site's data; HAProxy switches back; the critical
    functions are verified. The catch-up report lists the rows the old primary got after
    the last replication that the backup lacks (re-enter them), and the other way round.
    """
    ctx = _open(app, plan_path, inventory, as_json)
    if not (yes or as_json or not sys.stdin.isatty()):
        click.confirm(f"Fail {ctx.plan.service} back to {', '.join(ctx.site.primaries)}?",
                      abort=True)
    outcome = failback(ctx)
    if not as_json and outcome.report and outcome.report.count("\n") <= 60:
        console.print(outcome.report)
    _render(outcome, as_json)


class DrillGroup(click.Group):
    """``relctl drill SCENARIO`` runs a drill; ``relctl drill report ID`` shows one."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*SCENARIOS, *sorted(c for c in self.commands if c not in SCENARIOS)]


@click.group(cls=DrillGroup)
def drill() -> None:
    """Run a DR drill on a staging inventory (or relctl's lab), or read drill reports.

    A drill runs only where its continuity plan says `drills: allowed`; an environment
    named production also needs --yes-production. --dry-run prints the hosts and the
    faults and touches nothing.
    """


def _scenario_command(name: str, text: str) -> click.Command:
    @click.command(name=name, help=f"Drill: {text}.\n\nThe drill runs a Locust load "
                   "through the LB for its whole length, journals and injects the fault, "
                   "detects it, recovers, measures RTO, RPO and failed requests against the "
                   "plan's targets, undoes the fault, and writes its report (Markdown, JSON, "
                   "JUnit XML) and the DR plan. Before the fault, a preflight checks the "
                   "primaries serve, the LB has the plan's backend and servers, every host "
                   "of both sites answers, versions can be read, the last good release's "
                   "playbooks match the backups, every fault has a way back, and "
                   "replication works. Exit 0 targets met, 10 missed, 9 recovery failed, "
                   "2 refused (a failed check: nothing touched).")
    @PLAN_OPTION
    @INVENTORY_OPTION
    @click.option("--no-restore", is_flag=True,
                  help="Leave the hosts as the drill left them (e.g. failed over); undo "
                  "later with relctl drill restore ID.")
    @click.option("--dry-run", is_flag=True,
                  help="Print the hosts, the faults and how each is undone, and run the "
                  "preflight checks (exit 2 when one fails); touch nothing.")
    @click.option("--yes-production", is_flag=True,
                  help="Allow a drill in an environment named production.")
    @JUNIT_OPTION
    @JSON_OPTION
    @click.pass_obj
    def command(app: AppContext, plan_path: Path, inventory: Path | None, no_restore: bool,
                dry_run: bool, yes_production: bool, junit: Path | None,
                as_json: bool) -> None:
        ctx = _open(app, plan_path, inventory, as_json)
        planned = plan_drill(ctx, Lab(app.state_dir / "lab"), name,
                             yes_production=yes_production)
        if dry_run:
            try:
                checks = planned.preflight(replicate=False).checks
            finally:
                ctx.close()
            _print_dry_run(planned, checks, as_json)
            return
        outcome = Drill(planned, restore=not no_restore,
                        progress=progress_printer(as_json)).run()
        if junit is not None and outcome.figures is not None:
            write_output(junit, drill_junit_xml(outcome.figures.as_dict()))
        if not as_json and outcome.report:
            console.print(outcome.report)
        _render(outcome, as_json)
    return command


def _print_dry_run(planned: DrillPlan, checks: list[Check], as_json: bool) -> None:
    data = planned.as_dict()
    if as_json:
        emit_json({"ok": True, "dry_run": True, **data,
                   "preflight": [c.as_dict() for c in checks]})
        return
    console.print(f"[bold]dry run[/]: {escape(data['scenario'])} on {escape(data['service'])} "
                  f"in {escape(data['environment'])} ({data['mode']}: "
                  f"{escape(data['inventory'])}); nothing is touched")
    console.print(f"  load: {data['load']['users']} users through {escape(data['load']['url'])}")
    for fault in data["faults"]:
        undo = ", ".join(fault["undo"])
        restore = f" ({fault['restore_command']})" if fault.get("restore_command") else ""
        console.print(f"  {escape(fault['host'])}: {fault['channel']}: "
                      f"{escape(fault['inject'])}; undone by {escape(undo + restore)}")
    console.print("  preflight (the drill runs these again before its fault):")
    for check in checks:
        console.print(f"    [green]ok[/] {escape(check.name)}: {escape(check.detail)}")


for _name, _scenario in SCENARIOS.items():
    drill.add_command(_scenario_command(_name, _scenario.summary))
drill.help = inspect.cleandoc(drill.help or "") + "\n\n\b\nScenarios:\n" + "".join(
    f"  {name:<16} {cls.summary}\n" for name, cls in SCENARIOS.items())


@drill.command(name="test-failover")
@PLAN_OPTION
@INVENTORY_OPTION
@JUNIT_OPTION
@JSON_OPTION
@click.pass_obj
def drill_test_failover(app: AppContext, plan_path: Path, inventory: Path | None,
                        junit: Path | None, as_json: bool) -> None:
    """A test failover: prove the backup site without touching the primary or the LB.

    \b
    The backup hosts are brought up on the last good release (deployed where they run
    another) and the newest replica (taken first if there is none), every critical
    function is checked on each backup host directly, and the would-be RTO is measured;
    the replica is tagged "tested at"; the replica is loaded again so the checks' writes
    do not linger. The LB keeps serving from the primary site throughout.
    Exit 0 every function answered within its RTO, 10 a target missed, 9 failed.
    """
    ctx = _open(app, plan_path, inventory, as_json)
    outcome = run_test_failover(ctx)
    if junit is not None and outcome.figures is not None:
        write_output(junit, drill_junit_xml(outcome.figures.as_dict()))
    if not as_json and outcome.report:
        console.print(outcome.report)
    _render(outcome, as_json)


@drill.command(name="restore")
@click.argument("drill_id", type=RECORD_ID)
@PLAN_OPTION
@INVENTORY_OPTION
@JSON_OPTION
@click.pass_obj
def drill_restore(app: AppContext, drill_id: int, plan_path: Path, inventory: Path | None,
                  as_json: bool) -> None:
    """Undo the faults drill DRILL_ID injected: after its controller died, or after a
    drill run with --no-restore (restarts lost hosts, runs the declared restore commands,
    fails back when the LB was switched). Exit 0 restored, 9 failed, 2 bad input."""
    ctx = _open(app, plan_path, inventory, as_json)
    try:
        done = restore_drill(ctx, Lab(app.state_dir / "lab"), drill_id)
    finally:
        ctx.close()
    if as_json:
        emit_json({"ok": True, "id": drill_id, "done": done})
    else:
        for step in done:
            console.print(f"[green]restored[/]: {escape(step)}")


@drill.command(name="report")
@click.argument("drill_id", type=RECORD_ID)
@JUNIT_OPTION
@click.option("--html", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the drill as one self-contained HTML page: targets, "
              "measures, and the probe's timeline with the fault, detection, switch and "
              "recovery marked.")
@JSON_OPTION
@click.pass_obj
def drill_report(app: AppContext, drill_id: int, junit: Path | None, html: Path | None,
                 as_json: bool) -> None:
    """Show drill DRILL_ID's report (Markdown; --json for the figures; --junit FILE also
    writes it as JUnit XML: a test case per critical function and target; --html FILE as
    a page with the probe's timeline)."""
    try:
        record = app.journal().continuity_record(drill_id)
    except KeyError:
        record = None
    if record is None or record.kind != "drill":
        raise InputError(f"no drill {drill_id} in the journal", hint="relctl drill list")
    if junit is not None:
        if "report" not in record.detail:
            raise InputError(f"drill {drill_id} has no report (state {record.state})")
        write_output(junit, drill_junit_xml(record.detail["report"]))
    if html is not None:
        if "report" not in record.detail:
            raise InputError(f"drill {drill_id} has no report (state {record.state})")
        write_output(html, drill_html(record.detail["report"]))
    if as_json:
        emit_json(record.detail.get("report") or record.as_dict())
    else:
        console.print(record.report or f"drill {drill_id} has no report (state {record.state})")


@drill.command(name="list")
@JSON_OPTION
@click.pass_obj
def drill_list(app: AppContext, as_json: bool) -> None:
    """Every drill, failover, failback and replication in the journal, newest first."""
    journal = app.journal()
    journal.settle_abandoned()  # a crashed replication or failover is failed, not running
    records = journal.continuity_records(limit=50)
    if as_json:
        emit_json([r.as_dict() for r in records])
        return
    for r in records:
        summary: Any = r.detail.get("report", {}).get("verdict") or r.detail.get("scenario") or ""
        if r.kind == "drill" and r.detail.get("faults_state") == "injected":
            summary = f"{summary} [faults NOT undone: relctl drill restore {r.id}]"
        console.print(f"{r.id:>4} {r.kind:<12} {r.state:<8} {r.started:%Y-%m-%d %H:%M:%S} "
                      f"{summary}")


def _duration(text: str, option: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as error:
        raise InputError(f"{option}: {error}") from error


CONTINUITY_COMMANDS = [replicate, failover_command, failback_command, drill]
