"""Plan the staging lab: addresses, files to write and the launch command of each host.

Everything here is pure: it maps a ``LabSpec`` and a lab directory to data and text.
"""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.models.lab import LabGroup, LabHost, LabSpec, LabState

# Longest unix socket path the kernel accepts, less the 40-char %C hash and a dot-suffix
# ssh adds while creating the socket.
MAX_CONTROL_DIR = 107 - 41 - 18
HOST_DIRS = ("/srv",)
APP_DIRS = ("/etc/{app}", "/var/lib/{app}", "/var/log/{app}", "/run/{app}")
REMOTE_PYTHON = "/usr/bin/python3"


@dataclass(frozen=True)
class LabLayout:
    """Where the lab keeps its files, all under one directory."""

    root: Path

    @property
    def state_file(self) -> Path:
        return self.root / "lab.json"

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    @property
    def client_key(self) -> Path:
        return self.keys / "id_ed25519"

    @property
    def authorized_keys(self) -> Path:
        return self.keys / "authorized_keys"

    @property
    def known_hosts(self) -> Path:
        return self.root / "known_hosts"

    @property
    def inventory(self) -> Path:
        return self.root / "inventory.yml"

    @property
    def ansible_cfg(self) -> Path:
        return self.root / "ansible.cfg"

    @property
    def control_dir(self) -> Path:
        return self.root / "cp"

    def host_dir(self, name: str) -> Path:
        return self.root / "hosts" / name

    def host_key(self, name: str) -> Path:
        return self.host_dir(name) / "ssh_host_ed25519_key"

    def sshd_config(self, name: str) -> Path:
        return self.host_dir(name) / "sshd_config"

    def sshd_log(self, name: str) -> Path:
        return self.host_dir(name) / "sshd.log"

    def fs(self, name: str) -> Path:
        """The per-host folder whose subfolders are bind-mounted into the host."""
        return self.host_dir(name) / "fs"


def plan_hosts(spec: LabSpec) -> list[LabHost]:
    """Name and address every host: the LB first, then the primary and backup sites."""
    groups: list[tuple[str, LabGroup]] = [("lb-1", "lb")]
    groups += [(f"primary-{i}", "app_primary") for i in range(1, spec.primary + 1)]
    groups += [(f"backup-{i}", "app_backup") for i in range(1, spec.backup + 1)]
    base = ipaddress.ip_address(spec.base_address)
    return [
        LabHost(name=name, group=group, address=str(base + offset), ssh_port=spec.ssh_port)
        for offset, (name, group) in enumerate(groups)
    ]


def private_dirs(spec: LabSpec) -> list[str]:
    """Machine paths each host sees privately; ``/tmp`` is last so it hides nothing we need."""
    dirs = list(HOST_DIRS)
    dirs += [pattern.format(app=app) for app in spec.apps for pattern in APP_DIRS]
    return [*dirs, "/tmp"]


def mount_source(layout: LabLayout, name: str, target: str) -> Path:
    """The per-host folder bind-mounted over ``target``."""
    return layout.fs(name) / target.strip("/").replace("/", "_")


def launch_command(layout: LabLayout, spec: LabSpec, host: LabHost) -> list[str]:
    """The command that boots one host: new namespaces, private dirs, sshd as PID 1."""
    steps = [f"hostname {shlex.quote(host.name)}"]
    for target in private_dirs(spec):
        source = mount_source(layout, host.name, target)
        steps.append(f"mount --bind {shlex.quote(str(source))} {shlex.quote(target)}")
    sshd = ["/usr/sbin/sshd", "-D", "-e", "-f", str(layout.sshd_config(host.name))]
    steps.append("exec " + shlex.join(sshd))
    script = "set -e; " + "; ".join(steps)
    return ["unshare", "--mount", "--uts", "--pid", "--fork", "--mount-proc", "sh", "-c", script]


def render_sshd_config(layout: LabLayout, host: LabHost, max_sessions: int) -> str:
    """sshd_config for one host: key-only root login on its own address."""
    lines = [
        f"ListenAddress {host.address}:{host.ssh_port}",
        f"HostKey {layout.host_key(host.name)}",
        "PidFile none",
        f"AuthorizedKeysFile {layout.authorized_keys}",
        "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes no",
        "UseDNS no",
        f"MaxStartups {max_sessions}",
        f"MaxSessions {max_sessions}",
        "Subsystem sftp internal-sftp",
        "LogLevel INFO",
    ]
    return "\n".join(lines) + "\n"


def forks_for(size: int) -> int:
    """Ansible forks sized to the fleet: one per host, capped for a small controller."""
    return max(5, min(size, 50))


def render_ansible_cfg(layout: LabLayout, size: int) -> str:
    """An ansible.cfg tuned for speed: pipelining, ControlPersist in the state dir, forks."""
    ssh_args = " ".join(
        [
            "-o ControlMaster=auto",
            "-o ControlPersist=120s",
            f"-o UserKnownHostsFile={layout.known_hosts}",
            "-o StrictHostKeyChecking=yes",
            "-o IdentitiesOnly=yes",
            "-o PreferredAuthentications=publickey",
        ]
    )
    return f"""# Generated by relctl lab up; edits are overwritten.
[defaults]
inventory = {layout.inventory}
forks = {forks_for(size)}
host_key_checking = True
gathering = explicit
interpreter_python = {REMOTE_PYTHON}
retry_files_enabled = False
deprecation_warnings = False
timeout = 15

[ssh_connection]
pipelining = True
ssh_args = {ssh_args}
control_path_dir = {layout.control_dir}
control_path = %(directory)s/%%C
"""


def render_inventory(layout: LabLayout, state: LabState) -> dict[str, Any]:
    """The Ansible inventory (YAML-ready) with groups lb, app_primary, app_backup, app."""

    def members(group: LabGroup) -> dict[str, Any]:
        hosts = [h for h in state.hosts if h.group == group]
        return {"hosts": {h.name: {"ansible_host": h.address} for h in hosts}}

    spec = state.spec
    return {
        "all": {
            "vars": {
                "ansible_port": spec.ssh_port,
                "ansible_user": "root",
                "ansible_ssh_private_key_file": str(layout.client_key),
                "ansible_python_interpreter": REMOTE_PYTHON,
                "ledger_port": spec.app_port,
                "ledger_service_manager": "script",
                "haproxy_service_manager": "script",
                "lb_port": spec.lb_port,
                "lb_admin_port": spec.lb_admin_port,
            },
            "children": {
                "lb": members("lb"),
                "app": {"children": {"app_primary": members("app_primary"),
                                     "app_backup": members("app_backup")}},
            },
        }
    }


def known_hosts_lines(hosts: list[LabHost], public_keys: dict[str, str]) -> list[str]:
    """known_hosts entries pinning each host's generated key to its address and port."""
    return [f"[{h.address}]:{h.ssh_port} {public_keys[h.name]}" for h in hosts]
