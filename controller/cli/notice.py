"""``relctl notice``: preview a maintenance notice, or send it (the ``plan`` notice ahead of
the change window). ``apply`` sends the start, success and rollback notices by itself."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import get_args

import click
from rich.markup import escape

from controller.cli.context import AppContext
from controller.cli.output import JSON_OPTION, emit_json, err_console
from controller.cli.release import INVENTORY_OPTION
from controller.engine.environment import resolve_environment
from controller.errors import InputError
from controller.manifest_loader import load_manifest
from controller.models.manifest import Manifest
from controller.models.notify import NoticeEvent
from controller.notify import Delivery, Notifier, journal_deliveries, notice_context


@click.command()
@click.argument("manifest", type=click.Path(path_type=Path))
@click.option("--event", type=click.Choice(get_args(NoticeEvent)), default="plan",
              show_default=True, help="Which notice.")
@click.option("--reason", default="", help="Why (rollback, failover, failback notices).")
@click.option("--send", is_flag=True, help="Send it through the manifest's notify channels "
              "(default: only print it).")
@INVENTORY_OPTION
@JSON_OPTION
@click.pass_obj
def notice(app: AppContext, manifest: Path, event: NoticeEvent, reason: str, send: bool,
           inventory: Path | None, as_json: bool) -> None:
    """Print MANIFEST's maintenance notice for users, or --send it through its channels.

    \b
    The notice says what changes, when, the interruption to expect and whom to contact;
    templates come from the manifest's notify.templates_dir, else relctl's own.
    Hosts come from the inventory (resolved locally), when one is known.

    \b
    Examples:
      relctl notice releases/billing-2.4.0.yml
      relctl notice release.yml --event plan --send

    Exit codes: 0 printed or sent (a channel that failed is reported, not fatal),
    2 invalid manifest, or --send without a notify section.
    """
    loaded = load_manifest(manifest)
    hosts = _hosts(app, loaded, inventory)
    if not send:
        _preview(loaded, event, hosts, reason, as_json)
        return
    if loaded.notify is None:
        raise InputError(f"{manifest} has no notify section: nowhere to send the notice",
                         hint="`relctl schema` shows the notify channels")
    # An explicit --send sends even an event the config leaves out of notify.events.
    config = loaded.notify.model_copy(update={"events": [event]})
    notifier = Notifier(config, sys.stderr if as_json else None)
    deliveries = notifier.announce(loaded, event, hosts=hosts, reason=reason)
    with app.journal() as journal:
        journal_deliveries(journal, None, deliveries)
    _report(deliveries, as_json)


def _hosts(app: AppContext, manifest: Manifest, inventory: Path | None) -> list[str]:
    try:
        env = resolve_environment(app.state_dir, manifest, inventory)
    except InputError:
        return []  # no inventory and no lab: the notice does without the host count
    return env.hosts(manifest.targets)


def _preview(manifest: Manifest, event: NoticeEvent, hosts: list[str], reason: str,
             as_json: bool) -> None:
    notifier = Notifier(manifest.notify)
    fields = notice_context(manifest, event, now=datetime.now().astimezone(), hosts=hosts,
                            reason=reason)
    rendered = notifier.render(event, fields)
    channels = [c.label for c in notifier.channels]
    if as_json:
        emit_json({"event": event, "subject": rendered.subject, "body": rendered.body,
                   "channels": channels, "sent": False})
        return
    click.echo(f"Subject: {rendered.subject}\n\n{rendered.body}", nl=False)
    err_console.print(f"[dim]channels: {escape(', '.join(channels) or 'none configured')}; "
                      "send with --send[/]")


def _report(deliveries: list[Delivery], as_json: bool) -> None:
    if as_json:
        emit_json({"sent": True, "deliveries": deliveries,
                   "failed": sum(not d.ok for d in deliveries)})
        return
    for d in deliveries:
        colour = "green" if d.ok else "red"
        err_console.print(f"[{colour}]{'sent' if d.ok else 'FAILED'}[/] "
                          + escape(f"{d.channel}: {d.detail if d.ok else d.error}"))
