"""``relctl init``: starter release manifest, continuity plan and gates for a service.

The command turns its options into a ``ScaffoldRequest`` (bad options: one line, exit 2),
hands it to ``controller.engine.scaffold.init_service`` and says what it wrote.
"""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError
from pydantic_core import ErrorDetails
from rich.markup import escape

from controller.cli.output import JSON_OPTION, console, emit_json
from controller.engine.scaffold import InitResult, init_service, probe_version
from controller.errors import InputError
from controller.journal.redaction import mask_secrets
from controller.models.scaffold import ScaffoldRequest

OPTION_OF = {"configs": "--config", "dirs": "--dir", "playbooks": "--playbook"}
NO_VERSION_PATH = "none"


def _owner() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry, no LOGNAME: a container's nobody
        return "release manager"


@click.command()
@click.option("--service", required=True, metavar="NAME",
              help="Service name, a slug (billing): names the files, the items and the "
                   "HAProxy backend.")
@click.option("--port", required=True, type=int, metavar="PORT",
              help="Port the service answers on, on each host.")
@click.option("--playbook", "playbooks", required=True, multiple=True, metavar="FILE",
              type=click.Path(path_type=Path),
              help="Your deploy playbook (repeatable: run in order).")
@click.option("--artifact-root", metavar="DIR",
              help="Where the code lives on each host (/opt/billing): snapshotted whole, "
                   "or Capistrano-style with --artifact.")
@click.option("--artifact", metavar="TARBALL", type=click.Path(path_type=Path),
              help="This release's tarball on this machine: --artifact-root then holds "
                   "releases/<version> and a current link.")
@click.option("--config", "configs", multiple=True, metavar="FILE",
              help="A config file on the hosts (repeatable).")
@click.option("--dir", "dirs", multiple=True, metavar="DIR",
              help="A folder on the hosts to protect as a whole tree (repeatable).")
@click.option("--data", multiple=True, metavar="DB",
              help="A SQLite database on the hosts (repeatable): snapshotted, and "
                   "replicated to the backup site.")
@click.option("--postgresql", multiple=True, metavar="URL",
              help="A PostgreSQL database the hosts share, postgresql://USER@HOST[:PORT]/DB "
                   "(repeatable; no password: it is read from <SERVICE>_<DB>_PASSWORD).")
@click.option("--start", metavar="CMD", help="Command that starts the service.")
@click.option("--stop", metavar="CMD", help="Command that stops the service.")
@click.option("--check", metavar="CMD", help="Command that exits 0 when it runs and is healthy.")
@click.option("--health-path", default="/health", show_default=True, metavar="PATH",
              help="URL path that answers 200 when the service is healthy.")
@click.option("--version-path", default="/version", show_default=True, metavar="PATH",
              help='URL path answering the version (JSON such as {"version": ...}, or bare '
                   f"text); '{NO_VERSION_PATH}' if there is none.")
@click.option("--version-pointer", default="/version", show_default=True, metavar="POINTER",
              help="Where the version is in that JSON answer, as a JSON pointer (RFC 6901): "
                   'e.g. /datasette/version for {"datasette": {"version": "0.64"}}.')
@click.option("--targets", default="app_primary", show_default=True, metavar="GROUP",
              help="Inventory group released to: the primary site.")
@click.option("--backup-group", default="app_backup", show_default=True, metavar="GROUP",
              help="Inventory group of the backup site.")
@click.option("--lb-port", default=8000, show_default=True, type=int, metavar="PORT",
              help="Port of the load balancer's frontend for the service.")
@click.option("--lb-url", metavar="URL",
              help="URL the load tests hit [default: the lab's LB on --lb-port].")
@click.option("--environment", default="lab", show_default=True, metavar="NAME",
              help="Environment the manifest releases to (lock and sign-off scope).")
@click.option("--inventory", type=click.Path(path_type=Path), metavar="FILE",
              help="Ansible inventory the files name [default: none, the staging lab's].")
@click.option("--version", default="1.0.0", show_default=True, metavar="VERSION",
              help="Version the starter manifest releases.")
@click.option("--owner", default=None, metavar="NAME",
              help="Release manager and contact [default: your login name].")
@click.option("--repo", "-C", default=".", metavar="DIR",
              type=click.Path(file_okay=False, path_type=Path),
              help="Your repository, where the files go [default: the current folder].")
@click.option("--force", is_flag=True, help="Overwrite files that exist.")
@click.option("--probe", "probe", metavar="URL",
              help="A running instance of the service (http://HOST:PORT): its version is "
                   "read there with --version-path and --version-pointer before anything "
                   "is written (exit 2, nothing written, when it cannot be).")
@JSON_OPTION
def init(repo: Path, force: bool, probe: str | None, as_json: bool, **options: Any) -> None:
    """Write a starter release manifest, continuity plan and gates for a service.

    \b
    From your deploy playbook and what it changes on each host, writes into your
    repository (paths in them relative to the manifest, as relctl reads them):
      relctl/SERVICE-release.yml      release manifest: items, playbook, gates
      relctl/SERVICE-continuity.yml   continuity plan: functions, sites, LB, data
      tests/gates/test_SERVICE.py     testinfra: health, version = EXPECTED_VERSION
      loadtests/SERVICE.py            Locust: health and version through the LB
    Every file is commented: read it, adjust it, commit it. `relctl plan` accepts the
    manifest as written. Existing files are never replaced without --force.

    \b
    Paths on the hosts are absolute. The lab's conventions are the defaults: groups
    app_primary, app_backup and lb; an HAProxy backend named after the service, fronted
    on --lb-port; environment lab.

    \b
    Example:
      relctl init --service billing --port 9090 --playbook playbooks/deploy.yml \\
        --artifact-root /opt/billing --config /etc/billing/billing.conf \\
        --data /var/lib/billing/billing.db \\
        --start 'systemctl start billing' --stop 'systemctl stop billing' \\
        --check 'systemctl is-active billing'

    Exit codes: 0 written, 2 invalid option, missing file or a file exists (nothing
    written).
    """
    request = build_request(**options)
    found = probe_version(probe, request) if probe else None
    result = init_service(request, repo.absolute(), force=force)
    if as_json:
        emit_json({"ok": True, **vars(result), "probed_version": found})
    else:
        if found is not None:
            console.print(f"{escape(str(probe))} reports version {escape(found)}")
        _print(result)


def build_request(**options: Any) -> ScaffoldRequest:
    """The options as a ``ScaffoldRequest``; ``InputError`` naming the option if invalid."""
    fields = {key: value for key, value in options.items() if value is not None}
    fields["playbooks"] = tuple(Path(p).absolute() for p in options["playbooks"])
    for key in ("artifact", "inventory"):
        if options.get(key) is not None:
            fields[key] = Path(options[key]).absolute()
    if options.get("version_path") == NO_VERSION_PATH:
        fields["version_path"] = None
    fields["owner"] = options.get("owner") or _owner()
    try:
        return ScaffoldRequest(**fields)
    except ValidationError as error:
        raise InputError("; ".join(_problem(d) for d in error.errors())) from None


def _problem(detail: ErrorDetails) -> str:
    # A refused --postgresql URL is quoted back: never with the password it should not hold.
    message = mask_secrets(detail["msg"].removeprefix("Value error, "))
    if not detail["loc"]:
        return message
    field = str(detail["loc"][0])
    return f"{OPTION_OF.get(field, '--' + field.replace('_', '-'))}: {message}"


def _print(result: InitResult) -> None:
    for path in result.written:
        note = " (replaced)" if path in result.overwritten else ""
        console.print(f"[green]wrote[/] {path}{note}")
    console.print(f"\nin {result.repo}. Read each file, then:")
    for step in result.next_steps:
        console.print(f"  {step}")
