"""How Ansible reaches each inventory host over ssh, as a plain ``ssh`` command line.

relctl's lean paths (the snapshot agent's ssh transport, the testinfra gate) run their
commands over the very ssh ControlPersist masters ansible-playbook opened, with the command
line Ansible itself builds for the host. Ansible is asked once
(``python -m controller.adapters.ansible_connections``: its inventory, variables and ssh
connection plugin, so every setting Ansible honours is honoured) and the answer is cached
until the inventory, ansible.cfg or an ``ANSIBLE_*`` variable changes. A host Ansible
reaches some other way (another connection plugin, a password, a become method other than
sudo) gets no command: relctl then goes through Ansible for it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.errors import InputError
from controller.paths import check_private, private_dir, tools_path


@dataclass(frozen=True)
class Connection:
    """How Ansible reaches one host over ssh, as Ansible itself resolved it."""

    argv: tuple[str, ...]  # ssh and its options, ending with the address
    become: bool = False
    become_user: str = "root"
    interpreter: str | None = None

    def command(self, boot: str) -> list[str]:
        """The ssh command line running ``python -c boot`` on the host (through sudo when
        the inventory says become)."""
        remote = shlex.join([self.interpreter or "python3", "-c", boot])
        if self.become:
            remote = shlex.join(["sudo", "-H", "-S", "-n", "-u", self.become_user,
                                 "/bin/sh", "-c", remote])
        return [*self.argv, remote]




def resolve_connections(inventory: Path, ansible_cfg: Path, hosts: list[str],
                        cache_dir: Path | None) -> dict[str, Connection]:
    """The hosts relctl can reach over ssh exactly as Ansible would (the others are left
    out), each asked of Ansible once per inventory and configuration (cached in
    ``cache_dir``, one file per inventory and configuration that gathers the answers of
    every host asked so far; None: asked every time)."""
    key = settings_key(inventory, ansible_cfg)
    cached = cache_dir / f"{key}.json" if cache_dir else None
    found = _read_cache(cached) if cached else None
    answers: dict[str, Any] = dict(found) if isinstance(found, dict) else {}
    missing = [host for host in hosts if host not in answers]
    if missing:
        env = {**os.environ, "ANSIBLE_CONFIG": str(ansible_cfg), "PATH": tools_path()}
        result = subprocess.run([sys.executable, "-m", "controller.adapters.ansible_connections",
                                 str(inventory), *missing], capture_output=True, text=True,
                                env=env, check=False, timeout=120)
        if result.returncode != 0:  # not cached: Ansible is asked again next time
            return {}
        answers.update(json.loads(result.stdout))
        if cached:
            _write_cache(cached, answers)
    return {host: Connection(tuple(a["argv"]), bool(a["become"]), str(a["become_user"]),
                             a.get("interpreter"))
            for host in hosts if (a := answers.get(host)) and a.get("lean")}


def _read_cache(cached: Path) -> Any:
    """The cached answers, None when there are none. The commands in them run as root:
    a cache (or its folder) another user owns or may write to is refused (exit 2)."""
    private_dir(cached.parent, "the connection cache")
    try:
        fd = os.open(cached, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as error:  # ELOOP: a link planted in place of the cache
        raise InputError(f"cannot use the connection cache {cached}: {error}") from error
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise InputError(f"the connection cache {cached} is not a regular file")
        check_private(cached, info, "the connection cache")
        data = handle.read()
    try:
        return json.loads(data)
    except ValueError:  # a half-written cache of an older relctl: asked again
        return None


def _write_cache(cached: Path, answers: Any) -> None:
    """Write the cache 0600 under a unique name, then rename it into place: a reader
    never sees half a file, and nothing is written through a link."""
    handle, temporary = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=cached.parent)
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write(json.dumps(answers))
        os.replace(temporary, cached)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def settings_key(inventory: Path, ansible_cfg: Path) -> str:
    """A digest of everything Ansible reads to connect: the inventory (and the group and
    host variables beside it), ansible.cfg and ANSIBLE_* variables."""
    digest = hashlib.sha256(b"relctl connections 2\0")
    folder = inventory if inventory.is_dir() else inventory.parent
    files = [inventory, ansible_cfg, *sorted(folder.glob("group_vars/**/*")),
             *sorted(folder.glob("host_vars/**/*"))]
    for path in files:
        if path.is_file():
            digest.update(str(path).encode() + b"\0" + path.read_bytes())
        elif path.is_dir() and path == inventory:
            for member in sorted(path.rglob("*")):
                if member.is_file():
                    digest.update(str(member).encode() + b"\0" + member.read_bytes())
    for name in sorted(k for k in os.environ if k.startswith("ANSIBLE_")):
        digest.update(f"{name}={os.environ[name]}".encode())
    return digest.hexdigest()[:32]


