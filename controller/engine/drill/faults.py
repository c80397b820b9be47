"""The faults a drill injects, how each is undone, and the channels that do both.

A fault is journaled before it is injected, with what undoes it, so ``relctl drill
restore ID`` can undo the faults of a drill whose controller died. Channels:

    lab-host     the staging lab: SIGKILL the host's PID 1 (its sshd), by recorded pid
    lab-process  the staging lab: SIGKILL the service inside the host (drill.process_match)
    command      any inventory: the plan's declared inject/restore commands, through Ansible
    pid-file     any inventory: SIGKILL the pid in drill.pid_file, through Ansible
    systemd      any inventory: systemctl kill --signal=KILL drill.systemd_unit, via Ansible
    lb-health    the LB's health of the server forced down (and back up)

Undo actions: ``command`` (the declared restore), ``lab-up`` (restart the lab's lost
hosts), ``restart`` (the plan's restart command, else the last good release deployed),
``lb-health-up``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from controller.adapters import processes
from controller.engine.continuity import Continuity
from controller.engine.lab import Lab
from controller.errors import ContinuityError
from controller.models.continuity import FaultCommands
from controller.models.lab import HostProcess, LabState

ANSIBLE_CHANNELS = ("command", "pid-file", "systemd")


@dataclass(frozen=True)
class Fault:
    """One fault on one host, as journaled before it is injected."""

    host: str
    channel: str
    inject: str  # what is done: the declared command, or a description
    undo: tuple[str, ...]  # undo actions, in order
    restore_command: str | None = None  # the declared restore (undo action "command")
    argument: str | None = None  # pid file or unit of the pid-file and systemd channels

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "undo": list(self.undo)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fault:
        return cls(data["host"], data["channel"], data["inject"], tuple(data["undo"]),
                   data.get("restore_command"), data.get("argument"))


def declared(host: str, commands: FaultCommands) -> Fault:
    """A fault the plan declares: its inject and restore commands, run through Ansible."""
    return Fault(host, "command", commands.inject, ("command",), commands.restore)


@dataclass
class DrillSite:
    """Where a drill injects faults: the plan's hosts, and the lab when they are it."""

    ctx: Continuity
    lab: Lab | None = None
    state: LabState | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def mode(self) -> str:
        """``lab`` (relctl's staging lab, recorded pids) or ``inventory`` (Ansible)."""
        return "lab" if self.state is not None else "inventory"

    # -- inject ----------------------------------------------------------------------------

    def inject(self, faults: list[Fault], label: str) -> str:
        """Inject ``faults`` (hosts of one Ansible channel at once); returns what was done."""
        done = []
        for channel in ANSIBLE_CHANNELS:
            group = [f for f in faults if f.channel == channel]
            if group:
                first = group[0]
                self.ansible([f.host for f in group], channel, first.inject, first.argument,
                             f"{label}-inject")
                done.append(f"{first.inject if channel == 'command' else channel} on "
                            f"{', '.join(f.host for f in group)}")
        lost = [f.host for f in faults if f.channel == "lab-host"]
        if lost:  # every lost host at the same moment (a site loss)
            processes.kill_hosts([self._process(host) for host in lost])
            done.append(f"killed {', '.join(lost)} (PID 1)")
        for fault in faults:
            if fault.channel == "lab-process":
                assert fault.argument is not None
                pids = processes.kill_in_host(self._process(fault.host), fault.argument)
                if not pids:
                    raise ContinuityError(f"no process matching {fault.argument!r} on "
                                          f"{fault.host}")
                done.append(f"killed the service on {fault.host} (pids {pids})")
            elif fault.channel == "lb-health":
                self.ctx.site.lb.force_health(fault.host, up=False)
                done.append(f"LB health of {fault.host} forced down")
        return "; ".join(done)

    def _process(self, host: str) -> HostProcess:
        if self.state is None or host not in self.state.processes:
            raise ContinuityError(f"{host} is not a host relctl's lab started")
        return self.state.processes[host]

    # -- undo ------------------------------------------------------------------------------

    def undo(self, faults: list[Fault], label: str) -> list[str]:
        """Undo ``faults`` (each action once, in order); returns what was done."""
        done = []
        if any("lab-up" in f.undo for f in faults):
            if self.lab is None or self.state is None:
                raise ContinuityError("the faults were injected on relctl's lab, which is "
                                      "gone: relctl lab up, then relctl failback")
            self.lab.up(self.state.spec, lambda _m: None)
            done.append("lab hosts restarted (relctl lab up)")
        commands = [f for f in faults if "command" in f.undo and f.restore_command]
        for command in sorted({f.restore_command for f in commands if f.restore_command}):
            hosts = [f.host for f in commands if f.restore_command == command]
            self.ansible(hosts, "command", command, None, f"{label}-restore")
            done.append(f"{command} on {', '.join(hosts)}")
        restart = sorted({f.host for f in faults if "restart" in f.undo})
        if restart:
            done.append(self.restart(restart, label))
        for fault in faults:
            if "lb-health-up" in fault.undo:
                self.ctx.site.lb.force_health(fault.host, up=True)
                done.append(f"LB health of {fault.host} back to its checks")
        return done

    def restart(self, hosts: list[str], label: str) -> str:
        """The service started again on ``hosts``: the plan's restart command, else the
        last good release deployed."""
        done = self.ctx.start_service(hosts, label)
        if done is None:
            raise ContinuityError(f"cannot restart the service on {', '.join(hosts)}: no "
                                  "restart command in the plan and no release marked good")
        return done

    def ansible(self, hosts: list[str], channel: str, command: str, argument: str | None,
                label: str) -> None:
        if channel == "command":
            self.ctx.site.run_command(hosts, command, label)
            return
        extravars: dict[str, Any] = {"relctl_fault_kind": channel}
        if channel == "pid-file":
            extravars["relctl_pid_file"] = argument
        elif channel == "systemd":
            extravars["relctl_unit"] = argument
        self.ctx.site.run_fault_playbook(hosts, extravars, label)


def faults_json(faults: list[Fault]) -> str:
    return json.dumps([f.as_dict() for f in faults])
