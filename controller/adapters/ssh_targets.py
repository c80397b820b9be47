"""How Ansible's ssh connection reaches an inventory host, as a plain ``ssh`` command.

The testinfra gate runs its checks over the same ssh ControlPersist connections that
ansible-playbook opened, instead of through testinfra's ansible backend (which ignores the
``control_path_dir`` of ``[ssh_connection]`` and so opens a new ssh connection for every
command). These pure functions turn a host's inventory variables and the ansible.cfg
settings into that command, honouring what Ansible honours: ``ansible_host``, port, user,
private key, ``ssh_args`` (default ``-C -o ControlMaster=auto -o ControlPersist=60s``),
``ssh_common_args``, ``ssh_extra_args``, the control path (the same socket name as
Ansible's, so open masters are reused), host key checking, connect timeout and
``become`` (sudo).

A host Ansible reaches some other way (another connection plugin, a password, a become
method other than sudo) gets no command: the gate goes through Ansible for it.
"""

from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass
from typing import Any

ANSIBLE_SSH_ARGS = "-C -o ControlMaster=auto -o ControlPersist=60s"
SSH_CONNECTIONS = ("ssh", "smart")


@dataclass(frozen=True)
class SshConfig:
    """The ansible.cfg settings (and their environment overrides) that shape ssh."""

    ssh_args: str = ANSIBLE_SSH_ARGS
    common_args: str = ""
    extra_args: str = ""
    control_path: str = ""  # raw, with %(directory)s; empty: Ansible's hashed name
    control_path_dir: str = "~/.ansible/cp"
    remote_user: str | None = None
    remote_port: int | None = None
    private_key_file: str | None = None
    host_key_checking: bool = True
    timeout: int = 10
    become: bool = False
    become_user: str | None = None
    become_method: str = "sudo"


@dataclass(frozen=True)
class SshTarget:
    """One host: the ``ssh`` command that runs a shell command on it (appended last),
    and whether commands run through sudo (and as whom)."""

    host: str
    argv: list[str]
    become: bool = False
    become_user: str | None = None


def ssh_target(host: str, hostvars: dict[str, Any], config: SshConfig) -> SshTarget | None:
    """The ssh command Ansible's ssh connection would use for ``host``; None when
    Ansible would not reach it with key-based ssh and sudo."""
    if _var(hostvars, "ansible_connection", default="ssh") not in SSH_CONNECTIONS:
        return None
    if _var(hostvars, "ansible_ssh_pass", "ansible_password") is not None:
        return None
    become = _flag(_var(hostvars, "ansible_become", default=config.become))
    method = _var(hostvars, "ansible_become_method", default=config.become_method)
    if become and method != "sudo":
        return None
    address = str(_var(hostvars, "ansible_host", "ansible_ssh_host", default=host))
    port = _var(hostvars, "ansible_port", "ansible_ssh_port", default=config.remote_port)
    user = _var(hostvars, "ansible_user", "ansible_ssh_user", default=config.remote_user)
    argv = ["ssh", *_options(hostvars, config, address, port, user), address]
    become_user = _var(hostvars, "ansible_become_user", default=config.become_user)
    return SshTarget(host, argv, become, str(become_user) if become_user else None)


def _options(hostvars: dict[str, Any], config: SshConfig, address: str,
             port: Any, user: Any) -> list[str]:
    """Options in the order of Ansible's ``_build_command``."""
    ssh_args = str(_var(hostvars, "ansible_ssh_args", default=config.ssh_args))
    options = shlex.split(ssh_args)
    if not _flag(_var(hostvars, "ansible_ssh_host_key_checking", "ansible_host_key_checking",
                      default=config.host_key_checking)):
        options += ["-o", "StrictHostKeyChecking=no"]
    if port is not None:
        options += ["-o", f"Port={port}"]
    key = _var(hostvars, "ansible_ssh_private_key_file", "ansible_private_key_file",
               default=config.private_key_file)
    if key:
        options += ["-o", f"IdentityFile={key}"]
    if user:
        options += ["-o", f"User={user}"]
    timeout = _var(hostvars, "ansible_ssh_timeout", "ansible_timeout", default=config.timeout)
    options += ["-o", f"ConnectTimeout={timeout}"]
    for name, default in (("ansible_ssh_common_args", config.common_args),
                          ("ansible_ssh_extra_args", config.extra_args)):
        options += shlex.split(str(_var(hostvars, name, default=default) or ""))
    if "controlpersist" in ssh_args.lower() and "controlpath" not in " ".join(options).lower():
        options += ["-o", f"ControlPath={control_path(config, address, port, user)}"]
    return options


def control_path(config: SshConfig, address: str, port: Any, user: Any) -> str:
    """The ControlPath socket Ansible uses: ``control_path`` with ``%(directory)s``, else
    its hashed name of address, port and user in ``control_path_dir``."""
    directory = config.control_path_dir  # "~" already expanded by the adapter
    if config.control_path:
        return config.control_path.replace("%(directory)s", directory).replace("%%", "%")
    digest = hashlib.sha1(f"{address}-{port}-{user}".encode()).hexdigest()  # Ansible's name
    return f"{directory}/{digest[:10]}"


def _var(hostvars: dict[str, Any], *names: str, default: Any = None) -> Any:
    """The first of ``names`` set for the host, else ``default``."""
    for name in names:
        if hostvars.get(name) is not None:
            return hostvars[name]
    return default


def _flag(value: Any) -> bool:
    """Ansible's booleans: true/yes/on/1 in any case."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "on", "1", "y", "t")
    return bool(value)
