"""``relctl signoff``: record who approved a release, as which role, and when; list them.

An environment whose manifests name ``signoff.required`` roles refuses ``apply`` (exit 11)
until each role has signed the release off here (see ``controller.engine.signoff``). A
sign-off approves one manifest text (sha256) for one environment: ``--manifest``'s, else
the one ``apply`` last refused or waits for.
"""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from controller.cli.context import AppContext
from controller.cli.output import JSON_OPTION, console, emit_json
from controller.engine.signoff import (
    approval,
    check_slug,
    manifest_ref,
    read_status,
    record_signoff,
)
from controller.errors import InputError
from controller.journal import Journal, ManifestRef
from controller.manifest_loader import load_manifest
from controller.models.durations import parse_duration
from controller.models.manifest import Manifest
from controller.planning.signoff import Approval, SignoffStatus, sign_command, signoff_status


class DurationType(click.ParamType[float]):
    """A duration as people write it: ``90``, ``30s``, ``5m``, ``4h``."""

    name = "DURATION"

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        if isinstance(value, float):
            return value
        try:
            return parse_duration(value)
        except ValueError:
            self.fail(f"{value!r} is not a duration (e.g. 30s, 5m, 4h)", param, ctx)


WAIT_APPROVAL_OPTION = click.option(
    "--wait-approval", type=DurationType(), default=None,
    help="Wait this long for missing sign-offs before refusing (e.g. 30m) "
         "[default: the manifest's signoff.wait, else refuse at once].")


@click.command()
@click.argument("release")
@click.option("--role", default=None, help="The role signing off, e.g. uat, change-board.")
@click.option("--by", "signer", default=None, help="Who signs off (a name).")
@click.option("--note", default="", help="What was checked, a ticket, a condition.")
@click.option("--list", "listing", is_flag=True, help="List RELEASE's sign-offs instead.")
@click.option("--manifest", type=click.Path(path_type=Path), default=None,
              help="The manifest signed off [default: the one apply last waited for]; with "
                   "--list: also the roles it requires, and which are missing.")
@JSON_OPTION
@click.pass_obj
def signoff(app: AppContext, release: str, role: str | None, signer: str | None, note: str,
            listing: bool, manifest: Path | None, as_json: bool) -> None:
    """Record that NAME approved RELEASE as ROLE (with the time), or --list its sign-offs.

    \b
    Examples:
      relctl signoff billing-2.4.0 --role uat --by "Uma Tester" --note "UAT-42 passed"
      relctl signoff billing-2.4.0 --role change-board --by "Chris Board" \\
          --manifest releases/billing-2.4.0.yml
      relctl signoff billing-2.4.0 --list --manifest releases/billing-2.4.0.yml

    A sign-off approves the manifest's text (sha256) for its environment: an edited
    manifest, or another environment, needs new sign-offs.

    Exit codes: 0 recorded or listed, 2 invalid release name, role, name or manifest.
    """
    check_slug("release", release)
    with app.journal() as journal:
        if listing:
            _show(_status(journal, release, manifest), manifest is not None, as_json)
            return
        signed = _signed(journal, release, manifest)
        done = record_signoff(journal, release, role, signer, note, signed)
    if as_json:
        emit_json({"ok": True, "release": release, **_approval_json(done)})
    else:
        console.print(escape(f"signed off {release} as {done.role} by {done.by} at "
                             f"{_local(done)}: {done.signed_what()} ({signed.path})"))


def _signed(journal: Journal, release: str, manifest: Path | None) -> ManifestRef:
    """What the sign-off approves: ``manifest``, else what apply last waited for."""
    if manifest is not None:
        return manifest_ref(_load(release, manifest))
    request = journal.signoff_request(release)
    if request is None:
        raise InputError(f"which manifest of {release} is signed off? apply has not asked "
                         "for it yet", hint=f"{sign_command(release, 'ROLE')} --manifest FILE")
    return request.manifest


def _load(release: str, manifest: Path) -> Manifest:
    loaded = load_manifest(manifest)
    if loaded.release != release:
        raise InputError(f"{manifest} is release {loaded.release}, not {release}")
    return loaded


def _status(journal: Journal, release: str, manifest: Path | None) -> SignoffStatus:
    if manifest is None:
        approvals = [approval(s) for s in journal.signoffs(release)]
        return signoff_status(release, [], approvals)
    loaded = _load(release, manifest)
    required = loaded.signoff.required if loaded.signoff else []
    return read_status(journal, release, required, manifest_ref(loaded))


def _show(status: SignoffStatus, with_required: bool, as_json: bool) -> None:
    if as_json:
        emit_json({"release": status.release,
                   "signoffs": [_approval_json(a) for a in status.approvals],
                   "stale": [_approval_json(a) for a in status.stale],
                   **({"required": status.required, "missing": status.missing,
                       "complete": status.complete} if with_required else {})})
        return
    table = Table(title=f"sign-offs of {status.release}")
    for column in ("role", "by", "time", "note"):
        table.add_column(column)
    table.add_column("signed")
    for a in status.approvals:
        table.add_row(escape(a.role), escape(a.by), _local(a), escape(a.note), a.signed_what())
    for a in status.stale:
        table.add_row(escape(a.role), escape(a.by), _local(a), escape(a.note),
                      f"[red]stale[/]: {a.signed_what()}")
    shown = status.approvals or status.stale
    console.print(table if shown else escape(f"no sign-off of {status.release} recorded"))
    if with_required and status.missing:
        console.print(f"[red]missing[/] {', '.join(status.missing)}: "
                      + escape("; ".join(sign_command(status.release, r)
                                         for r in status.missing)))
    elif with_required:
        console.print(f"[green]complete[/]: {', '.join(status.required) or 'none required'}")


def _approval_json(approval: Approval) -> dict[str, str | None]:
    return {"role": approval.role, "by": approval.by, "time": approval.time.isoformat(),
            "note": approval.note, "environment": approval.environment,
            "manifest_sha256": approval.sha256}


def _local(approval: Approval) -> str:
    return approval.time.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
