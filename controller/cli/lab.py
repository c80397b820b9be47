"""``relctl lab``: the staging lab of real SSH hosts behind HAProxy."""

from __future__ import annotations

import dataclasses

import click
from pydantic import ValidationError
from rich.table import Table

from controller.cli.context import AppContext
from controller.cli.output import JSON_OPTION, console, emit_json, progress_printer
from controller.engine.lab import Lab, LabStatus
from controller.errors import InputError, LabError
from controller.models.lab import FrontedService, LabService, LabSpec


def _lab(ctx: click.Context) -> Lab:
    app: AppContext = ctx.obj
    return Lab(app.state_dir / "lab")



@click.group()
def lab() -> None:
    """A staging lab on this machine: real sshd hosts in namespaces behind HAProxy.

    \b
    Each host is an sshd running as PID 1 of its own PID/mount/UTS namespaces, with
    its own hostname and loopback address. It sees the machine's installed software,
    but /etc, /opt, /srv, /var, /home, /root and /usr/local are its own writable copies
    (overlays) and /tmp and /run its own empty folders: a service installed the usual
    way on one host is on that host only. Ansible, testinfra and Locust reach it as
    they would reach a server. Needs root, openssh-server and haproxy.
    """


@lab.command()
@click.option("--primary", type=int, default=None, help="Hosts in the primary site [3].")
@click.option("--backup", type=int, default=None, help="Hosts in the backup site [2].")
@click.option("--base-address", default=None,
              help="Loopback address of the LB; hosts take the next ones [127.0.0.10].")
@click.option("--ssh-port", type=int, default=None, help="sshd port on every host [2222].")
@click.option("--lb-port", type=int, default=None,
              help="HAProxy frontend port of the first service; the next follow it [8000].")
@click.option("--service", "services", multiple=True, metavar="NAME:PORT[/PATH]",
              help="A service the load balancer fronts (repeatable): its name, the port it "
              "listens on on each host, and an HTTP health path (else a TCP check). "
              "Active/standby: the first healthy primary takes all the traffic.")
@click.option("--round-robin", "round_robin", multiple=True, metavar="NAME",
              help="Balance this --service active/active instead: every healthy primary in "
              "turn (repeatable).")
@click.option("--postgresql/--no-postgresql", default=None,
              help="Each app host also runs its own PostgreSQL cluster on its address "
              "(role postgres, password in LAB_DIR/keys/postgresql.password) [off].")
@JSON_OPTION
@click.pass_context
def up(ctx: click.Context, primary: int | None, backup: int | None, base_address: str | None,
       ssh_port: int | None, lb_port: int | None, services: tuple[str, ...],
       round_robin: tuple[str, ...], postgresql: bool | None, as_json: bool) -> None:
    """Start the lab (idempotent: a healthy lab is kept as it is, dead hosts restarted).

    Options not given keep the running lab's values (after a drill, plain
    `relctl lab up` brings the lost hosts back), else take the defaults in brackets.
    Each --service gets an HAProxy frontend (the first on --lb-port, the next on the
    following ports) and a backend of that name over every app host.

    \b
    Examples:
      relctl lab up --primary 3 --backup 2 --service billing:9090/health
      relctl lab up --service web:8080/healthz --service api:9000
      relctl lab up --service web:8080/healthz --round-robin web     # active/active
    """
    if round_robin and not services:
        raise InputError("--round-robin needs the --service it balances", hint="relctl lab "
                         "up --service web:8080/health --round-robin web")
    the_lab = _lab(ctx)
    existing = the_lab.load()
    given = {"primary": primary, "backup": backup, "base_address": base_address,
             "ssh_port": ssh_port, "lb_port": lb_port,
             "services": _parse_services(services, round_robin) if services else None,
             "postgresql": postgresql}
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
                   "services": _services_json(state.services),
                   "inventory": the_lab.layout.inventory})
        return
    console.print(
        f"lab up in {report.seconds:.1f}s: started {len(report.started)}, kept "
        f"{len(report.kept)}, stopped {len(report.stopped)}"
    )
    for service in state.services:
        console.print(f"{service.name:<14} {service.url}  (hosts' port {service.host_port})")
    if not state.services:
        console.print("no service fronted by the load balancer (add one with --service)")
    console.print(f"inventory:     {the_lab.layout.inventory}")
    console.print(f"ansible.cfg:   {the_lab.layout.ansible_cfg}")


def _parse_services(texts: tuple[str, ...], round_robin: tuple[str, ...]) -> list[LabService]:
    try:
        parsed = [LabService.parse(text) for text in texts]
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    unknown = sorted(set(round_robin) - {s.name for s in parsed})
    if unknown:
        raise InputError(f"--round-robin {', '.join(unknown)}: not a --service of this lab")
    return [s.model_copy(update={"balance": "roundrobin"}) if s.name in round_robin else s
            for s in parsed]


def _services_json(services: list[FrontedService]) -> list[dict[str, object]]:
    return [dataclasses.asdict(service) for service in services]


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
        "services": _services_json(result.services),
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
        "postgresql": result.postgresql,
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
    backends = Table(title="load balancer backends")
    for column in ("backend", "server", "address", "status", "role"):
        backends.add_column(column)
    for b in result.backends:
        colour = "green" if b.status.startswith("UP") else "red"
        backends.add_row(b.backend, b.server, b.address, f"[{colour}]{b.status}[/]",
                         "backup" if b.backup else "active")
    if result.backends:
        console.print(backends)
    else:
        console.print(f"LB: {result.lb_error or 'no backend (lab up --service NAME:PORT)'}",
                      markup=False)
    for service in result.services:
        console.print(f"service {service.name}: {service.url}")
    if result.postgresql:
        console.print(f"PostgreSQL on every app host's address, port "
                      f"{result.postgresql['port']}, role postgres, password in "
                      f"{result.postgresql['password_file']}", markup=False)
    console.print(f"inventory: {result.inventory}")
