"""``relctl lab``: the staging lab of real SSH hosts behind HAProxy."""

from __future__ import annotations

import click
from pydantic import ValidationError
from rich.table import Table

from controller.cli.context import AppContext
from controller.cli.output import JSON_OPTION, console, emit_json, progress_printer
from controller.engine.deploy import deploy_ledger
from controller.engine.lab import Lab, LabStatus
from controller.errors import InputError, LabError
from controller.models.lab import LabSpec


def _lab(ctx: click.Context) -> Lab:
    app: AppContext = ctx.obj
    return Lab(app.state_dir / "lab")



@click.group()
def lab() -> None:
    """A staging lab on this machine: real sshd hosts in namespaces behind HAProxy.

    \b
    Each host is an sshd running as PID 1 of its own PID/mount/UTS namespaces, with
    its own hostname, loopback address and private /srv, /etc/<app>, /var/lib/<app>,
    /var/log/<app>, /run/<app> and /tmp. Ansible, testinfra and Locust reach it as
    they would reach a server. Needs root, openssh-server and haproxy.
    """


@lab.command()
@click.option("--primary", type=int, default=None, help="Hosts in the primary site [3].")
@click.option("--backup", type=int, default=None, help="Hosts in the backup site [2].")
@click.option("--base-address", default=None,
              help="Loopback address of the LB; hosts take the next ones [127.0.0.10].")
@click.option("--ssh-port", type=int, default=None, help="sshd port on every host [2222].")
@click.option("--lb-port", type=int, default=None, help="HAProxy frontend port [8000].")
@JSON_OPTION
@click.pass_context
def up(ctx: click.Context, primary: int | None, backup: int | None, base_address: str | None,
       ssh_port: int | None, lb_port: int | None, as_json: bool) -> None:
    """Start the lab (idempotent: a healthy lab is kept as it is, dead hosts restarted).

    Options not given keep the running lab's values (after a drill, plain
    `relctl lab up` brings the lost hosts back), else take the defaults in brackets.

    \b
    Example:  relctl lab up --primary 3 --backup 2
    """
    the_lab = _lab(ctx)
    existing = the_lab.load()
    given = {"primary": primary, "backup": backup, "base_address": base_address,
             "ssh_port": ssh_port, "lb_port": lb_port}
    base = existing.spec.model_dump() if existing else {}
    try:
        spec = LabSpec(**{**base, **{k: v for k, v in given.items() if v is not None}})
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "options"
        raise InputError(f"lab up: {field}: {first['msg']}") from exc
    report = the_lab.up(spec, progress=progress_printer(as_json))
    state = the_lab.require()
    if as_json:
        emit_json({"ok": True, **vars(report), "url": state.url,
                   "inventory": the_lab.layout.inventory})
        return
    console.print(
        f"lab up in {report.seconds:.1f}s: started {len(report.started)}, kept "
        f"{len(report.kept)}, stopped {len(report.stopped)}"
    )
    console.print(f"load balancer: {state.url}\ninventory:     {the_lab.layout.inventory}")
    console.print(f"ansible.cfg:   {the_lab.layout.ansible_cfg}")


@lab.command()
@JSON_OPTION
@click.pass_context
def down(ctx: click.Context, as_json: bool) -> None:
    """Stop every process the lab started (by pid) and close ssh masters."""
    pids = _lab(ctx).down(progress=progress_printer(as_json))
    if as_json:
        emit_json({"ok": True, "stopped_pids": pids})
    else:
        console.print(f"lab down: {len(pids)} process(es) stopped, nothing left running")


@lab.command()
@JSON_OPTION
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Show each host, its address, whether sshd answers, and the LB's backends.

    Exit code 7 when a host is down or sshd does not answer.
    """
    result = _lab(ctx).status()
    healthy = all(h.sshd_answers for h in result.hosts)
    if as_json:
        emit_json({"ok": healthy, **_status_json(result)})
    else:
        _print_status(result)
    if not healthy:
        raise SystemExit(int(LabError.exit_code))


def _status_json(result: LabStatus) -> dict[str, object]:
    return {
        "url": result.url,
        "inventory": str(result.inventory),
        "ansible_cfg": str(result.ansible_cfg),
        "lab_dir": str(result.lab_dir),
        "hosts": [
            {"name": h.host.name, "group": h.host.group, "address": h.host.address,
             "ssh_port": h.host.ssh_port, "pid": h.pid, "running": h.running,
             "sshd_answers": h.sshd_answers}
            for h in result.hosts
        ],
        "backends": [vars(b) for b in result.backends],
        "lb_error": result.lb_error,
    }


def _print_status(result: LabStatus) -> None:
    hosts = Table(title="lab hosts")
    for column in ("host", "group", "address", "pid", "sshd"):
        hosts.add_column(column)
    for h in result.hosts:
        answer = "[green]answers[/]" if h.sshd_answers else "[red]down[/]"
        hosts.add_row(h.host.name, h.host.group, f"{h.host.address}:{h.host.ssh_port}",
                      str(h.pid or "-"), answer)
    console.print(hosts)
    backends = Table(title=f"load balancer {result.url}")
    for column in ("backend", "server", "address", "status", "role"):
        backends.add_column(column)
    for b in result.backends:
        colour = "green" if b.status.startswith("UP") else "red"
        backends.add_row(b.backend, b.server, b.address, f"[{colour}]{b.status}[/]",
                         "backup" if b.backup else "active")
    console.print(backends if result.backends else f"[red]LB:[/] {result.lb_error}")
    console.print(f"inventory: {result.inventory}")


@lab.command()
@click.argument("version")
@click.option("--limit", default="app_primary", show_default=True,
              help="Inventory group or host pattern to deploy to.")
@JSON_OPTION
@click.pass_context
def deploy(ctx: click.Context, version: str, limit: str, as_json: bool) -> None:
    """Deploy sample app "ledger" VERSION to lab hosts (no snapshot, no gates).

    This is the plain deploy playbook on the lab, for trying things out; releases
    with snapshots, gates and rollback go through `relctl apply`.
    """
    the_lab = _lab(ctx)
    result = deploy_ledger(the_lab, version, limit, progress=progress_printer(as_json))
    state = the_lab.require()
    if as_json:
        emit_json({"ok": True, "version": version, "hosts": sorted(result.hosts),
                   "seconds": result.seconds, "url": state.url})
    else:
        console.print(f"ledger {version} deployed to {len(result.hosts)} host(s) "
                      f"in {result.seconds:.1f}s; served at {state.url}")
