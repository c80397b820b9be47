"""Bring the staging lab up, down, and report on it.

``up`` is a reconciliation: it keeps healthy hosts, (re)starts missing ones, stops hosts
no longer asked for, then lets Ansible configure the load balancer. The state file is
saved after every host started so that a crash never loses a pid.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from controller.adapters import processes, ssh
from controller.adapters.ansible import PlaybookRun, failure_summary, run_playbook
from controller.adapters.ansible_vars import ansible_yaml, unsafe
from controller.adapters.haproxy import BackendServer, RuntimeApi
from controller.adapters.postgresql import pg_tool
from controller.adapters.system import check_lab_prerequisites, check_overlay, ensure_mountpoints
from controller.errors import InputError, LabError, PlaybookError
from controller.models.lab import FrontedService, HostProcess, LabHost, LabSpec, LabState
from controller.paths import bundled_playbook
from controller.planning import lab as plan

Progress = Callable[[str], None]
BOOT_TIMEOUT = 30.0


@dataclass
class UpReport:
    """What ``lab up`` did."""

    started: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass(frozen=True)
class HostStatus:
    """One host as ``lab status`` sees it."""

    host: LabHost
    pid: int | None
    running: bool
    sshd_answers: bool


@dataclass(frozen=True)
class LabStatus:
    """The whole lab as ``lab status`` sees it."""

    lab_dir: Path
    inventory: Path
    ansible_cfg: Path
    services: list[FrontedService]
    hosts: list[HostStatus]
    postgresql: dict[str, object] | None
    backends: list[BackendServer]
    lb_error: str | None

    @property
    def url(self) -> str | None:
        """The first service's URL through the load balancer."""
        return self.services[0].url if self.services else None


class Lab:
    """The staging lab kept under one directory."""

    def __init__(self, root: Path) -> None:
        self.layout = plan.LabLayout(root)

    def load(self) -> LabState | None:
        """The saved lab state, or None when no lab was ever brought up here."""
        if not self.layout.state_file.exists():
            return None
        saved = json.loads(self.layout.state_file.read_text())
        for retired in ("apps", "app_port"):  # lab.json of relctl 0.1.0: the lab is kept
            saved.get("spec", {}).pop(retired, None)
        return LabState.model_validate(saved)

    def require(self) -> LabState:
        """The saved lab state; raises when there is no lab."""
        state = self.load()
        if state is None:
            raise LabError(f"no lab in {self.layout.root}", hint="run: relctl lab up")
        return state

    def up(self, spec: LabSpec, progress: Progress = lambda _: None) -> UpReport:
        """Start (or keep) every host of ``spec`` and configure the load balancer."""
        started_at = time.monotonic()
        self._check_location()
        check_lab_prerequisites()
        check_overlay(self.layout.root / "overlay-probe")
        state = self._reconcile_spec(spec)
        report = UpReport()
        self._prepare_files(state)
        self._stop_unplanned(state, report, progress)
        self._start_hosts(state, report, progress)
        self._wait_until_answering(state, progress)
        self._write_ansible_files(state)
        progress("configuring HAProxy on the load balancer (relctl lb_setup.yml)")
        self._configure_lb(state)
        if spec.postgresql:
            progress("starting PostgreSQL on every app host (relctl lab_postgresql.yml)")
            self._start_postgresql(state)
        report.seconds = time.monotonic() - started_at
        return report

    def down(self, progress: Progress = lambda _: None) -> list[int]:
        """Stop every process the lab started and close ssh masters; return stopped pids."""
        state = self.load()
        if state is None:
            return []
        closed = ssh.close_control_masters(self.layout.control_dir)
        progress(f"closed {closed} ssh ControlPersist master(s)")
        pids = [pid for p in state.processes.values() for pid in (p.sshd_pid, p.unshare_pid)]
        processes.stop(*state.processes.values())
        survivors = processes.pids_alive(pids)
        if survivors:
            raise LabError(f"lab processes still running after stop: {survivors}")
        progress(f"stopped {len(state.processes)} host(s)")
        state.processes = {}
        self._save(state)
        return pids

    def status(self) -> LabStatus:
        """Each host's process and sshd, and the load balancer's backends."""
        state = self.require()
        with ThreadPoolExecutor(max_workers=16) as pool:
            hosts = list(pool.map(lambda h: self._host_status(state, h), state.hosts))
        backends: list[BackendServer] = []
        lb_error = None
        try:
            backends = self.runtime_api(state).servers()
        except LabError as exc:
            lb_error = exc.message
        return LabStatus(
            lab_dir=self.layout.root,
            inventory=self.layout.inventory,
            ansible_cfg=self.layout.ansible_cfg,
            services=state.services,
            hosts=hosts,
            postgresql=({"port": state.spec.postgresql_port, "user": "postgres",
                         "password_file": str(self.layout.postgresql_password)}
                        if state.spec.postgresql else None),
            backends=backends,
            lb_error=lb_error,
        )

    def runtime_api(self, state: LabState) -> RuntimeApi:
        """A client of the load balancer's HAProxy runtime API."""
        return RuntimeApi(f"{state.lb.address}:{state.spec.lb_admin_port}")

    def playbook_run(self, playbook: str, **kwargs: object) -> PlaybookRun:
        """A ``PlaybookRun`` of one of relctl's playbooks against this lab."""
        return PlaybookRun(
            playbook=bundled_playbook(playbook),
            inventory=self.layout.inventory,
            ansible_cfg=self.layout.ansible_cfg,
            runs_dir=self.layout.root / "runs",
            **kwargs,  # type: ignore[arg-type]
        )

    # -- steps of up ---------------------------------------------------------------

    def _check_location(self) -> None:
        root = self.layout.root.resolve()
        for tree in plan.PRIVATE:
            if root == Path(tree) or Path(tree) in root.parents:
                raise InputError(
                    f"the lab directory {root} is under {tree}, which each lab host replaces "
                    "with its own",
                    hint="choose another --state-dir (e.g. under /var/tmp)",
                )
        if len(str(self.layout.control_dir)) > plan.MAX_CONTROL_DIR:
            raise InputError(
                f"the lab directory {root} is too long for ssh ControlPath sockets "
                f"(at most {plan.MAX_CONTROL_DIR - 3} characters)",
                hint="choose a shorter --state-dir",
            )

    def _reconcile_spec(self, spec: LabSpec) -> LabState:
        old = self.load()
        hosts = plan.plan_hosts(spec)
        if old is None:
            return LabState(spec=spec, hosts=hosts)
        if old.processes and _addressing(old.spec) != _addressing(spec):
            raise LabError(
                "a lab with other addresses or ports is running here",
                hint="run relctl lab down first, or use another --state-dir",
            )
        return LabState(spec=spec, hosts=hosts, processes=old.processes)

    def _prepare_files(self, state: LabState) -> None:
        layout = self.layout
        for folder in (layout.keys, layout.control_dir, layout.shared):
            folder.mkdir(parents=True, exist_ok=True)
        ssh.generate_key(layout.client_key, "relctl-lab-controller")
        layout.authorized_keys.write_text(Path(f"{layout.client_key}.pub").read_text())
        layout.client_key.chmod(0o600)
        public = {}
        for host in state.hosts:
            ssh.generate_key(layout.host_key(host.name), f"relctl-lab-{host.name}")
            public[host.name] = ssh.public_key(layout.host_key(host.name))
            config = plan.render_sshd_config(layout, host, max_sessions=100)
            layout.sshd_config(host.name).write_text(config)
            for folder in layout.host_folders(host.name):
                folder.mkdir(parents=True, exist_ok=True)
        layout.known_hosts.write_text("\n".join(plan.known_hosts_lines(state.hosts, public)) + "\n")
        ensure_mountpoints([*plan.OVERLAID, *plan.PRIVATE, plan.SHARED])

    def _stop_unplanned(self, state: LabState, report: UpReport, progress: Progress) -> None:
        planned = {h.name for h in state.hosts}
        for name in sorted(set(state.processes) - planned):
            processes.stop(state.processes.pop(name))
            report.stopped.append(name)
            progress(f"stopped {name} (no longer in the lab)")
        self._save(state)

    def _start_hosts(self, state: LabState, report: UpReport, progress: Progress) -> None:
        for host in state.hosts:
            current = state.processes.get(host.name)
            if current is not None and processes.is_running(current):
                report.kept.append(host.name)
                continue
            if current is not None:
                processes.stop(current)
            ssh.ensure_free(host.address, host.ssh_port)
            state.processes[host.name] = self._boot(host)
            self._save(state)
            report.started.append(host.name)
            progress(f"started {host.name} on {host.address}:{host.ssh_port}")

    def _boot(self, host: LabHost) -> HostProcess:
        command = plan.launch_command(self.layout, host)
        return processes.spawn_namespaced(command, self.layout.sshd_log(host.name))

    def _wait_until_answering(self, state: LabState, progress: Progress) -> None:
        deadline = time.monotonic() + BOOT_TIMEOUT
        waiting = list(state.hosts)
        with ThreadPoolExecutor(max_workers=16) as pool:
            while waiting and time.monotonic() < deadline:
                answers = list(pool.map(lambda h: ssh.probe(h.address, h.ssh_port), waiting))
                waiting = [h for h, ok in zip(waiting, answers, strict=True) if not ok]
                if waiting:
                    time.sleep(0.05)
        if waiting:
            names = ", ".join(h.name for h in waiting)
            log = self.layout.sshd_log(waiting[0].name)
            raise LabError(f"sshd did not answer on {names}", hint=f"see {log}")
        progress(f"all {len(state.hosts)} hosts answer on ssh")

    def _write_ansible_files(self, state: LabState) -> None:
        self.layout.inventory.write_text(inventory_text(self.layout, state))
        self.layout.ansible_cfg.write_text(plan.render_ansible_cfg(self.layout, len(state.hosts)))

    def _configure_lb(self, state: LabState) -> None:
        result = run_playbook(self.playbook_run("lb_setup.yml", label="lb-setup"))
        if not result.succeeded:
            raise PlaybookError(
                f"lb_setup.yml failed ({result.status}): {failure_summary(result)}",
                hint=f"artifacts in {result.artifact_dir}",
            )

    def _start_postgresql(self, state: LabState) -> None:
        """A cluster per app host, inside the host (it dies with the host's PID 1)."""
        binaries = pg_tool("postgres").parent
        password = self.layout.postgresql_password
        if not password.exists():
            password.write_text(secrets.token_urlsafe(18) + "\n")
        password.chmod(0o600)
        result = run_playbook(self.playbook_run(
            "lab_postgresql.yml", label="lab-postgresql",
            extravars={"relctl_pg_bin": str(binaries), "relctl_pg_port": state.spec.postgresql_port,
                       "relctl_pg_password_file": str(password)}))
        if not result.succeeded:
            raise PlaybookError(
                f"lab_postgresql.yml failed ({result.status}): {failure_summary(result)}",
                hint=f"artifacts in {result.artifact_dir}")

    def _host_status(self, state: LabState, host: LabHost) -> HostStatus:
        proc = state.processes.get(host.name)
        running = proc is not None and processes.is_running(proc)
        return HostStatus(
            host=host,
            pid=proc.sshd_pid if proc else None,
            running=running,
            sshd_answers=running and ssh.probe(host.address, host.ssh_port),
        )

    def _save(self, state: LabState) -> None:
        self.layout.root.mkdir(parents=True, exist_ok=True)
        tmp = self.layout.state_file.with_suffix(".tmp")
        tmp.write_text(state.model_dump_json(indent=2))
        tmp.replace(self.layout.state_file)


def inventory_text(layout: plan.LabLayout, state: LabState) -> str:
    """The lab's inventory file. The services come from ``--service``: data Ansible never
    templates (``!unsafe``; their health path goes into haproxy.cfg by a template)."""
    inventory = plan.render_inventory(layout, state)
    variables = inventory["all"]["vars"]
    variables["lb_services"] = unsafe(variables["lb_services"])
    return ansible_yaml(inventory)


def _addressing(spec: LabSpec) -> tuple[str, int, int, int]:
    return (spec.base_address, spec.ssh_port, spec.lb_port, spec.lb_admin_port)
