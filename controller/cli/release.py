"""Release commands: apply, rollback, resume, history, show, unlock, schema."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from controller.adapters.signals import requests_on_signals
from controller.cli.context import AppContext
from controller.cli.output import (
    JSON_OPTION,
    HostBoard,
    console,
    emit_json,
    progress_printer,
)
from controller.cli.signoff import WAIT_APPROVAL_OPTION
from controller.engine.children import stop_orphans
from controller.engine.continuity import Continuity
from controller.engine.continuity.follow import follow_backups
from controller.engine.continuity.preflight import site_versions
from controller.engine.environment import children_dir, resolve_environment
from controller.engine.outcome import ReleaseOutcome
from controller.engine.release import ReleaseEngine
from controller.errors import InputError
from controller.journal import ReleaseRecord
from controller.manifest_loader import load_manifest, manifest_json_schema
from controller.models.manifest import Manifest
from controller.notify import Notifier

HOLDER_STATES = {"alive": "holder alive", "unknown": "holder on another host",
                 "gone": "holder gone: the lock is stale"}
INVENTORY_OPTION = click.option(
    "--inventory", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
    help="Ansible inventory (default: the manifest's, else the staging lab's).")



def _render(outcome: ReleaseOutcome, as_json: bool) -> None:
    if as_json:
        emit_json({"ok": outcome.exit_code == 0, **vars(outcome)})
    else:
        for host, tasks in sorted(outcome.changes.items()):  # a dry run's would-be changes
            console.print(f"[bold]{escape(host)}[/]: would change")
            for task in tasks:
                console.print(f"  - {escape(task['task'])}")
                if task["diff"]:
                    console.print(escape(task["diff"]), highlight=False)
        colour = "green" if outcome.exit_code == 0 else "red"
        console.print(f"[bold {colour}]{outcome.state}[/] {outcome.release}: "
                      f"{escape(outcome.message)}"
                      f" ({outcome.seconds:.1f}s, exit {outcome.exit_code})")
    sys.exit(outcome.exit_code)


@click.command()
@click.argument("manifest", type=click.Path(path_type=Path))
@INVENTORY_OPTION
@click.option("--dry-run", is_flag=True, help="Run the playbooks in check mode with diff; "
              "change nothing, take no lock.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--force", is_flag=True, help="Apply a release the journal marks bad.")
@WAIT_APPROVAL_OPTION
@JSON_OPTION
@click.pass_obj
def apply(app: AppContext, manifest: Path, inventory: Path | None, dry_run: bool, yes: bool,
          force: bool, wait_approval: float | None, as_json: bool) -> None:
    """Release MANIFEST: lock, snapshot, apply in batches, verify, commit or roll back.

    \b
    When the manifest's signoff.required roles have not all signed the release off
    (relctl signoff), nothing is touched: apply waits (--wait-approval, signoff.wait),
    then refuses. A sign-off approves one manifest text for one environment. A release
    the journal marks bad (rolled back) is refused unless --force. Notices go to users
    through the manifest's notify channels at the start and the end; a channel that
    fails is reported, never fatal.

    \b
    \b
    The backup site follows: when a continuity plan of the service lists the manifest
    under `releases` (the plan relctl replicate, failover or a drill last used), the
    backup hosts are taken out of the LB's rotation, deployed with the same playbooks,
    checked (version, testinfra) and put back, after the primaries pass.

    \b
    Exit codes: 0 released, 2 invalid manifest or a bad release, 3 rolled back,
    4 rollback failed or refused (needs a human), 5 environment locked,
    11 sign-off missing (nothing touched), 12 stopped by a signal before any host
    changed (nothing to roll back; a signal later rolls back: 3), 13 released on the
    primaries but the backup site did not follow (they stay released; see backup_site).
    """
    loaded = load_manifest(manifest)
    journal = app.journal()  # an unreachable journal: exit 7 before anything is made
    env = resolve_environment(app.state_dir, loaded, inventory)
    engine = ReleaseEngine(loaded, env, journal, progress_printer(as_json),
                           _notifier(loaded, as_json), approval_wait=wait_approval, force=force)
    if dry_run:
        with requests_on_signals(engine.cancel.request):
            outcome = engine.dry_run()
        _render(outcome, as_json)
    if not (yes or as_json or not sys.stdin.isatty()):
        click.confirm(f"Release {loaded.release} to {loaded.targets} in {loaded.environment}?",
                      abort=True)
    with HostBoard.for_terminal(as_json) as board, requests_on_signals(engine.cancel.request):
        if board.live is not None:
            engine.on_task = board.on_task  # progress lines scroll above the table
        outcome = engine.apply()
    if outcome.state == "released":  # the backup site follows, if a plan says so
        follow_backups(app.state_dir, loaded, journal, inventory, outcome,
                       progress_printer(as_json))
    _render(outcome, as_json)


@click.command()
@click.argument("release")
@INVENTORY_OPTION
@JSON_OPTION
@click.pass_obj
def rollback(app: AppContext, release: str, inventory: Path | None, as_json: bool) -> None:
    """Restore RELEASE's snapshot on every host it touched, verify, and mark it bad."""
    journal = app.journal()
    record = _find(journal.find_release(release), release)
    engine = _engine_for(app, record, inventory, as_json)
    with requests_on_signals(engine.cancel.request):  # a rollback, once begun, finishes
        outcome = engine.rollback(record, "rollback requested by the operator")
    _render(outcome, as_json)


@click.command()
@INVENTORY_OPTION
@click.option("--forward", is_flag=True,
              help="Continue from the first batch not verified (its playbooks and gates "
                   "run again, same snapshot) instead of rolling back.")
@JSON_OPTION
@click.pass_obj
def resume(app: AppContext, inventory: Path | None, forward: bool, as_json: bool) -> None:
    """Finish a release whose controller died: say where it stopped, stop what the dead
    controller left running, then roll its touched hosts back, verified (or go on with
    --forward). Never leaves a mixed fleet.

    \b
    A lock held by a dead controller is broken first; one held by a live one is refused
    (exit 5). --forward is refused (exit 2, nothing touched) when the snapshot is
    incomplete, the release was rolling back, or the manifest changed since it started.

    \b
    Exit codes: 0 released (--forward), 3 rolled back, 4 rollback failed,
    2 --forward refused, 5 locked by a live controller, 13 released but the backup site
    of a continuity plan covering it did not follow.
    """
    journal = app.journal()
    unfinished = journal.unfinished_releases()
    if not unfinished:
        if as_json:
            emit_json({"ok": True, "message": "no unfinished release"})
        else:
            console.print("no unfinished release")
        return
    record = unfinished[0]
    if journal.lock_status(record.environment) is not None:
        journal.break_lock(record.environment)
    _say_stopped(stop_orphans(journal, children_dir(app.state_dir), release_id=record.id),
                 as_json)
    engine = _engine_for(app, record, inventory, as_json)
    engine.adopt_leftovers(record)
    _say_stopped([engine.stopped_at(record)], as_json)
    with requests_on_signals(engine.cancel.request):
        outcome = (engine.resume_forward(record) if forward else
                   engine.rollback(record, f"resumed after the controller died in "
                                           f"{record.state}",
                                   # a gate had failed when it was already rolling back
                                   interrupted=record.state != "rolling_back"))
    if outcome.state == "released":  # released after all: the backup site follows too
        follow_backups(app.state_dir, engine.manifest, journal, inventory, outcome,
                       progress_printer(as_json))
    _render(outcome, as_json)


@click.command()
@click.option("--limit", type=click.IntRange(1, 100_000), default=20, show_default=True,
              help="How many releases.")
@click.option("--environment", default=None, help="Only this environment.")
@JSON_OPTION
@click.pass_obj
def history(app: AppContext, limit: int, environment: str | None, as_json: bool) -> None:
    """Past releases, newest first."""
    records = app.journal().history(limit=limit, environment=environment)
    if as_json:
        emit_json({"releases": [_record_json(r) for r in records]})
        return
    table = Table(title="release history")
    for column in ("id", "release", "version", "env", "state", "exit", "started", "message"):
        table.add_column(column)
    for r in records:
        table.add_row(str(r.id), r.name, r.version, r.environment,
                      r.state + (" (bad)" if r.bad else ""), str(r.exit_code),
                      r.started.strftime("%Y-%m-%d %H:%M:%S"), (r.message or "")[:60])
    console.print(table)


@click.command()
@click.option("--plan", "plan_path", type=click.Path(exists=True, dir_okay=False,
                                                     path_type=Path), default=None,
              help="Also what each site of this continuity plan runs now: every host's "
              "version as it reports it, and the risk of a backup site on another release "
              "than the last good one (reads only).")
@JSON_OPTION
@click.pass_obj
def status(app: AppContext, plan_path: Path | None, as_json: bool) -> None:
    """Locks held (and whether each holder still runs), releases in flight, and the last
    good release per environment. On a PostgreSQL journal, holders from every machine.
    With --plan, each site's version too.

    Exit code 5 when an environment is locked, 1 when a release is unfinished.
    """
    journal = app.journal()
    sites = _site_versions(app, plan_path) if plan_path is not None else None
    locks = journal.locks()
    unfinished = journal.unfinished_releases()
    recent = journal.history(limit=50)
    good = {(r.service, r.environment): r for r in reversed(recent)
            if r.state == "released" and not r.bad}
    holders = {lk.environment: journal.holder_state(lk) for lk in locks}
    if as_json:
        emit_json({"locks": [{"environment": lk.environment, "release": lk.release,
                              "holder": str(lk.holder), "holder_state": holders[lk.environment]}
                             for lk in locks],
                   "unfinished": [_record_json(r) for r in unfinished],
                   "last_good": [_record_json(r) for r in good.values()],
                   **({"sites": sites} if sites is not None else {})})
    else:
        for lk in locks:
            console.print(f"[yellow]locked[/] {lk.environment}: {lk.release} by {lk.holder}"
                          f" ({HOLDER_STATES[holders[lk.environment]]})")
        for r in unfinished:
            console.print(f"[red]unfinished[/] {r.name} ({r.state}); run: relctl resume")
        for r in good.values():
            console.print(f"[green]last good[/] {r.service} in {r.environment}: {r.name}")
        if not (locks or unfinished or good):
            console.print("no release recorded yet")
        if sites is not None:
            _print_sites(sites)
    if locks:
        sys.exit(5)
    if unfinished:
        sys.exit(1)


def _site_versions(app: AppContext, plan_path: Path) -> dict[str, Any]:
    ctx = Continuity.open(app.state_dir, plan_path, app.journal())
    try:
        return site_versions(ctx)
    finally:
        ctx.close()


def _print_sites(sites: dict[str, Any]) -> None:
    console.print(f"sites of {escape(sites['service'])} in {escape(sites['environment'])} "
                  f"(last good release: {sites['last_good'] or 'none'}):")
    for site, hosts in sites["sites"].items():
        for host, read in hosts.items():
            said = read["version"] or f"[yellow]{escape(read['problem'] or 'unknown')}[/]"
            console.print(f"  {site:8} {escape(host)}: {said}")
    if sites["skew"]:
        console.print(f"[yellow]{escape(sites['skew'])}[/]")


@click.command()
@click.argument("release")
@JSON_OPTION
@click.pass_obj
def show(app: AppContext, release: str, as_json: bool) -> None:
    """One release in full: phases, hosts, snapshots, gate figures, warranty monitors."""
    journal = app.journal()
    record = _find(journal.find_release(release), release)
    detail = {
        **_record_json(record),
        "phases": [{"name": p.name, "state": p.state, "seconds": p.seconds, "detail": p.detail}
                   for p in journal.phases(record.id)],
        "hosts": [{"host": h.host, "state": h.state, "before": h.version_before,
                   "after": h.version_after} for h in journal.host_states(record.id)],
        "snapshots": [{"host": s.host, "item": s.item, "kind": s.kind, "sha256": s.sha256,
                       "bytes": s.size_bytes, "verified": s.verified}
                      for s in journal.snapshots(record.id)],
        "gates": [{"phase": g.phase, "kind": g.kind, "verdict": g.verdict,
                   "figures": g.figures} for g in journal.gate_results(record.id)],
        "monitors": [{"id": m.id, "state": m.state, "started": m.started.isoformat(),
                      "ended": m.ended.isoformat() if m.ended else None,
                      "exit_code": m.exit_code, "message": m.message, "summary": m.summary}
                     for m in journal.monitors(record.id)],
    }
    if as_json:
        emit_json(detail)
    else:
        console.print_json(json.dumps(detail, default=str))


@click.command()
@click.argument("environment")
@click.option("--force", is_flag=True, help="Break the lock even if its holder looks alive.")
@JSON_OPTION
@click.pass_obj
def unlock(app: AppContext, environment: str, force: bool, as_json: bool) -> None:
    """Break ENVIRONMENT's lock when its holder died (refused while it lives, unless --force).

    The processes the dead holder started (playbooks, gates), recorded in the journal, are
    stopped first, by pid and create time; the command says which."""
    journal = app.journal()
    broken = journal.break_lock(environment, force=force)
    stopped = (stop_orphans(journal, children_dir(app.state_dir), owner=broken.holder)
               if broken else [])
    message = f"lock on {environment} broken" if broken else f"{environment} was not locked"
    if as_json:
        emit_json({"ok": True, "broken": broken is not None, "message": message,
                   "stopped": stopped})
    else:
        _say_stopped(stopped, as_json)
        console.print(message)


@click.command()
def schema() -> None:
    """Print the release manifest's JSON Schema (for editors and CI linting)."""
    sys.stdout.write(json.dumps(manifest_json_schema(), indent=2) + "\n")


def _say_stopped(lines: list[str], as_json: bool) -> None:
    """Where a release stopped and what was done about a dead controller's children
    (on stderr when stdout is JSON)."""
    for line in lines:
        if as_json:
            print(line, file=sys.stderr)
        else:
            console.print(escape(line))


def _find(record: ReleaseRecord | None, name: str) -> ReleaseRecord:
    if record is None:
        raise InputError(f"no release {name!r} in the journal", hint="see: relctl history")
    return record


def _engine_for(app: AppContext, record: ReleaseRecord, inventory: Path | None,
                as_json: bool) -> ReleaseEngine:
    manifest = load_manifest(record.manifest_path)
    env = resolve_environment(app.state_dir, manifest, inventory)
    return ReleaseEngine(manifest, env, app.journal(), progress_printer(as_json),
                         _notifier(manifest, as_json))


def _notifier(manifest: Manifest, as_json: bool) -> Notifier:
    """The manifest's notifier; its stdout channel prints to stderr when stdout is JSON."""
    return Notifier.for_manifest(manifest, sys.stderr if as_json else None)


def _record_json(r: ReleaseRecord) -> dict[str, object]:
    return {"id": r.id, "release": r.name, "version": r.version, "service": r.service,
            "environment": r.environment, "state": r.state, "bad": r.bad,
            "exit_code": r.exit_code, "message": r.message, "started": r.started.isoformat(),
            "ended": r.ended.isoformat() if r.ended else None, "operator": str(r.operator)}


RELEASE_COMMANDS = [apply, rollback, resume, status, history, show, unlock, schema]
