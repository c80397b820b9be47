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
# Trees each host sees as its own writable copy of the machine's: an overlay whose lower
# layer is the machine's tree (installed software stays visible) and whose upper layer is
# the host's folder in the lab directory (what the host writes stays its own).
OVERLAID = ("/etc", "/opt", "/srv", "/var", "/home", "/root", "/usr/local")
# Trees each host starts empty, as a server does after a boot.
PRIVATE = ("/tmp", "/run")
# The lab's shared storage (an NFS mount of real sites): every host sees the same folder
# (``LabLayout.shared``) here; Litestream replicas of the example plan live on it.
SHARED = "/mnt"
# Runtime directories the host's daemons need, created inside the host: (path, mode).
RUNTIME_DIRS = (("/run/sshd", "0755"),)
# root's shell start-up on a host: a fresh server's, not the controller's own ~/.bashrc
# (sshd's bash reads it before every command Ansible sends; a pyenv or a banner there
# would cost every task, or break its file transfers). Written to the host's own layer.
HOST_BASHRC = "# a relctl lab host: root's own shell start-up, empty as on a fresh server\n"
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
    def postgresql_password(self) -> Path:
        """The password of the ``postgres`` role on every host's cluster (0600)."""
        return self.keys / "postgresql.password"

    @property
    def known_hosts(self) -> Path:
        return self.root / "known_hosts"

    @property
    def shared(self) -> Path:
        """The storage every host sees at ``SHARED``."""
        return self.root / "shared"

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
        """The per-host folder that holds everything the host writes."""
        return self.host_dir(name) / "fs"

    def upper(self, name: str, tree: str) -> Path:
        """The overlay's upper layer of ``tree`` on host ``name``."""
        return self.fs(name) / "upper" / _flat(tree)

    def work(self, name: str, tree: str) -> Path:
        """The overlay's work folder of ``tree`` (same filesystem as its upper layer)."""
        return self.fs(name) / "work" / _flat(tree)

    def private(self, name: str, tree: str) -> Path:
        """The folder bind-mounted over ``tree`` (a ``PRIVATE`` tree) on host ``name``."""
        return self.fs(name) / "private" / _flat(tree)

    def host_folders(self, name: str) -> list[Path]:
        """Every folder that must exist before host ``name`` boots."""
        layers = [f(name, tree) for tree in OVERLAID for f in (self.upper, self.work)]
        return [*layers, *(self.private(name, tree) for tree in PRIVATE)]


def _flat(tree: str) -> str:
    return tree.strip("/").replace("/", "_")


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


def overlay_order(root: Path) -> list[str]:
    """``OVERLAID`` trees in mount order: the one holding the lab directory goes last.

    Each overlay's layers must be reached through the machine's own tree, not through an
    overlay mounted before it (an overlay is no upper layer for another).
    """
    return sorted(OVERLAID, key=lambda tree: _contains(Path(tree), root))


def _contains(tree: Path, path: Path) -> bool:
    return path == tree or tree in path.parents


def launch_command(layout: LabLayout, host: LabHost) -> list[str]:
    """The command that boots one host: new namespaces, its own trees, sshd as PID 1."""
    name = host.name
    steps = [f"hostname {shlex.quote(name)}"]
    for tree in PRIVATE:
        steps.append(shlex.join(["mount", "--bind", str(layout.private(name, tree)), tree]))
    steps.append(shlex.join(["mount", "--bind", str(layout.shared), SHARED]))
    for tree in overlay_order(layout.root):
        options = (f"lowerdir={tree},upperdir={layout.upper(name, tree)},"
                   f"workdir={layout.work(name, tree)}")
        steps.append(shlex.join(["mount", "-t", "overlay", "relctl-lab", "-o", options, tree]))
    for path, mode in RUNTIME_DIRS:
        steps.append(shlex.join(["install", "-d", "-m", mode, "-o", "root", "-g", "root", path]))
    steps.append(f"printf %s {shlex.quote(HOST_BASHRC)} > /root/.bashrc")
    sshd = ["/usr/sbin/sshd", "-D", "-e", "-f", str(layout.sshd_config(name))]
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
                # No init system runs on a lab host: playbooks start services by script.
                "service_manager": "script",
                "lb_admin_port": spec.lb_admin_port,
                "lb_services": [
                    {"name": service.name, "port": service.host_port,
                     "frontend_port": service.port, "health_path": service.health_path,
                     "balance": service.balance}
                    for service in state.services
                ],
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
