"""``relctl plan``: the implementation plan a change board signs. Changes no host.

The command gathers the plan's inputs (the inventory's hosts through a local
``ansible --list-hosts``, the journal's past releases of the service), hands them to the
pure ``controller.planning.runbook.build_plan``, and renders the result.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click
from rich.markup import escape

from controller.adapters.ansible import list_hosts
from controller.cli.context import AppContext
from controller.cli.output import JSON_OPTION, emit_json, err_console, write_output
from controller.cli.release import INVENTORY_OPTION
from controller.engine.continuity.follow import covering_plan, followed_versions
from controller.engine.environment import Environment, resolve_environment
from controller.journal import HostStateRecord, Journal, ReleaseRecord
from controller.manifest_loader import load_manifest
from controller.models.base import EARLIEST_YEAR, LATEST_YEAR
from controller.models.manifest import Manifest
from controller.planning.runbook import (
    WARRANTY_DAYS,
    BackupSite,
    Fleet,
    History,
    PastPhase,
    build_plan,
)
from controller.reports.plan_render import FORMATS, Format, plan_dict, render

HISTORY_LIMIT = 50  # past releases of the service the estimates look at
BACKUP_PATTERN = "*backup*"  # Ansible matches it against group and host names


class IsoTime(click.ParamType[datetime]):
    """An ISO 8601 time; without an offset it is read as local time."""

    name = "ISO-TIME"

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            moment = datetime.fromisoformat(str(value))
            moment = moment if moment.tzinfo else moment.astimezone()
        except (ValueError, OverflowError, OSError):
            self.fail(f"{value!r} is not an ISO 8601 time (e.g. 2026-12-01T22:00+01:00)",
                      param, ctx)
        if not EARLIEST_YEAR <= moment.year < LATEST_YEAR:  # the runbook adds hours to it
            self.fail(f"{value!r}: a time between {EARLIEST_YEAR} and {LATEST_YEAR}", param, ctx)
        return moment


@click.command()
@click.argument("manifest", type=click.Path(path_type=Path))
@INVENTORY_OPTION
@click.option("--start", type=IsoTime(), default=None,
              help="When the cut-over starts (ISO 8601, e.g. 2026-12-01T22:00+01:00) "
                   "[default: the manifest's window start, else now].")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="markdown",
              show_default=True, help="Markdown for review, HTML to print, JSON for tools.")
@JSON_OPTION
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the plan to this file instead of stdout.")
@click.option("--warranty-days", type=click.IntRange(0, 3650), default=WARRANTY_DAYS,
              show_default=True, help="Length of the post-release warranty period.")
@click.pass_obj
def plan(app: AppContext, manifest: Path, inventory: Path | None, start: datetime | None,
         fmt: Format, as_json: bool, output: Path | None, warranty_days: int) -> None:
    """Print MANIFEST's implementation plan, for the change board to sign. Changes nothing.

    \b
    0. what each site runs now and after (the backup site follows when a continuity
       plan lists the manifest under releases:)
    1. configuration items per host (artifact X → Y, as the journal knows X)
    2. batches, canary first
    3. cut-over runbook: steps with clock times, owners and checkboxes, from the
       change window's start (or --start, or now)
    4. rollback plan per item, from the snapshot; points of no return flagged
    5. risk register: the manifest's risks plus those the plan reveals (no backup
       hosts, single host, no Locust gate, loose thresholds, too short a window)

    \b
    Step durations are the median of the same phases in past releases of the service
    (relctl history), or defaults when there are none; each step says which. Hosts come
    from the inventory, resolved locally: no host is contacted.

    \b
    Examples:
      relctl plan releases/billing-2.4.0.yml --inventory hosts.yml
      relctl plan release.yml --start 2026-12-01T22:00+01:00 --format html -o plan.html
      relctl plan release.yml --json | jq '.risks[] | select(.source == "detected")'

    Exit codes: 0 plan printed, 2 invalid manifest, inventory or option.
    """
    loaded = load_manifest(manifest)
    env = resolve_environment(app.state_dir, loaded, inventory)
    fleet = read_fleet(env, loaded)
    with app.journal() as journal:
        history = read_history(journal, loaded, fleet.hosts)
    result = build_plan(loaded, fleet, history, now=datetime.now().astimezone(), start=start,
                        snapshot_store=str(env.state_dir / "snapshots"),
                        warranty_days=warranty_days)
    chosen: Format = "json" if as_json else fmt
    if output is not None:
        write_output(output, render(result, chosen))
        err_console.print(escape(f"plan of {result.release} written to {output}"))
    elif chosen == "json":
        emit_json(plan_dict(result))
    else:
        click.echo(render(result, chosen), nl=False)


# --- the plan's inputs ------------------------------------------------------------------


def read_fleet(env: Environment, manifest: Manifest) -> Fleet:
    """The target hosts and the backup site's hosts, as the inventory names them."""
    backups = list_hosts(env.inventory, env.ansible_cfg, BACKUP_PATTERN)
    return Fleet(env.hosts(manifest.targets), backups)


def read_history(journal: Journal, manifest: Manifest, hosts: list[str]) -> History:
    """Past phases, passing load figures and deployed versions of the manifest's service."""
    records = journal.history(limit=HISTORY_LIMIT, service=manifest.service)
    phases = [PastPhase(p.name, p.seconds) for r in records for p in journal.phases(r.id)
              if p.state == "ok" and p.seconds is not None]
    p95 = [float(g.figures["candidate"]["p95_ms"]) for r in records
           for g in journal.gate_results(r.id)
           if g.kind == "locust" and g.verdict == "pass" and g.phase == "candidate"
           and isinstance(g.figures.get("candidate"), dict)
           and isinstance(g.figures["candidate"].get("p95_ms"), int | float)]
    local = [r for r in records if r.environment == manifest.environment]
    covering, _ = covering_plan(journal, manifest)
    backup = BackupSite(followed_versions(journal, local),
                        str(covering) if covering is not None else None)
    return History(phases, p95, deployed_versions(journal, local, hosts), backup)


def deployed_versions(journal: Journal, records: list[ReleaseRecord],
                      hosts: list[str]) -> dict[str, str]:
    """host -> the version the newest release that settled it left there."""
    found: dict[str, str] = {}
    for record in records:  # newest first
        for state in journal.host_states(record.id):
            version = _left_behind(record, state)
            if state.host in hosts and version and state.host not in found:
                found[state.host] = version
    return found


def _left_behind(record: ReleaseRecord, state: HostStateRecord) -> str | None:
    """The version a release left on a host: the new one if it stayed, else the old one."""
    if state.state in ("verified", "applied") and record.state in ("released", "failed"):
        return state.version_after  # released, or a refused rollback kept the new version
    if state.state in ("restored", "snapshotted", "pending"):
        return state.version_before
    return None
