"""How relctl's host agent reaches the hosts: one program run per host, all at once.

    AgentTransport.run(label, stdins) -> {host: AgentReply}   (bytes in, JSON reply out;
    ``host_agent.py`` builds the program and the typed requests on top)
    ├── SshTransport      ssh straight over the ControlPersist masters Ansible opened,
    │                     with the exact ssh command line Ansible builds for the host
    │                     (``adapters/ansible_connections.py``), one ssh per host in parallel
    └── AnsibleTransport  one ``command`` task of ``relctl_agent.yml`` through ansible-runner

Both send the agent's sources and the request on stdin and read one JSON reply.
``transport_for`` picks ssh for every host whose connection settings it can honour and
Ansible for the rest; ``RELCTL_AGENT_TRANSPORT=ansible`` forces Ansible (``bench/rollback.py``
measures both). Measured on 10 lab hosts, the ssh path takes a fraction of the Ansible
task (see the bench), which is why it is the default.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import shutil
import subprocess
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Protocol, TypeVar, cast

from controller.adapters.ansible import PlaybookRun, TaskEvent, run_playbook
from controller.adapters.children import ChildRecorder, owned_child, run_owned
from controller.adapters.connections import Connection, resolve_connections
from controller.agent.protocol import Reply
from controller.paths import bundled_playbook, tools_path

TRANSPORT_ENV = "RELCTL_AGENT_TRANSPORT"  # auto (default) | ansible
TIMEOUT_S = 600


ReplyT_co = TypeVar("ReplyT_co", bound=Reply, covariant=True)


@dataclass(frozen=True)
class AgentReply(Generic[ReplyT_co]):
    """What the agent answered on one host (``data``: its JSON reply, one of
    ``controller/agent/protocol.py``'s reply types)."""

    host: str
    ok: bool
    data: ReplyT_co
    error: str = ""


class AgentTransport(Protocol):
    """Runs the agent once on each host, all hosts at once."""

    def run(self, label: str, stdins: Mapping[str, bytes]) -> dict[str, AgentReply[Reply]]:
        """Feed ``stdins[host]`` to the agent on each host; every host's reply."""


def reply_of(host: str, code: int, out: bytes, err: bytes) -> AgentReply[Reply]:
    """The agent's JSON reply, or the transport's error when there is none."""
    try:
        data = json.loads(out) if out.strip() else {}
    except ValueError:
        data = {}
    if not isinstance(data, dict) or not data:
        detail = err.decode(errors="replace").strip()[-400:] or f"exit {code}, no reply"
        return AgentReply(host, False, {}, f"unreachable or agent failed: {detail}")
    reply = cast(Reply, data)  # the agent's own JSON, shaped by protocol.py
    return AgentReply(host, bool(reply.get("ok")) and code == 0, reply,
                      str(reply.get("error", "")))


@dataclass(frozen=True)
class SshTransport:
    """One ssh per host, all started by one small shell script under relctl's launcher
    (so they are journaled, and die with the controller)."""

    connections: Mapping[str, Connection]
    boot: str
    runs_dir: Path
    children: ChildRecorder | None = None

    def run(self, label: str, stdins: Mapping[str, bytes]) -> dict[str, AgentReply[Reply]]:
        work = self.runs_dir / f"{time.strftime('%Y%m%dT%H%M%S')}-{label}-{uuid.uuid4().hex[:6]}"
        work.mkdir(parents=True, mode=0o700)
        lines = []
        for n, (host, data) in enumerate(stdins.items()):
            (work / f"{n}.in").write_bytes(data)
            ssh = shlex.join(self.connections[host].command(self.boot))
            lines.append(f"( {ssh} <{n}.in >{n}.out 2>{n}.err; echo $? >{n}.rc ) &")
        (work / "fanout.sh").write_text("cd " + shlex.quote(str(work)) + "\n"
                                        + "\n".join(lines) + "\nwait\n")
        env = {**os.environ, "PATH": tools_path()}
        with owned_child(self.children, label, "sh") as child:
            run_owned(child, ["/bin/sh", str(work / "fanout.sh")], env=env, timeout=TIMEOUT_S,
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return {host: self._reply(work, n, host) for n, host in enumerate(stdins)}

    @staticmethod
    def _reply(work: Path, n: int, host: str) -> AgentReply[Reply]:
        rc = work / f"{n}.rc"
        code = int(rc.read_text().strip() or 255) if rc.exists() else 255
        out = (work / f"{n}.out").read_bytes() if (work / f"{n}.out").exists() else b""
        err = (work / f"{n}.err").read_bytes() if (work / f"{n}.err").exists() else b""
        for name in ("in", "out"):  # they hold snapshot payloads: keep no copy
            (work / f"{n}.{name}").unlink(missing_ok=True)
        return reply_of(host, code, out, err)


@dataclass(frozen=True)
class AnsibleTransport:
    """One ``command`` task per host through ansible-runner (``relctl_agent.yml``)."""

    inventory: Path
    ansible_cfg: Path
    boot: str
    runs_dir: Path
    children: ChildRecorder | None = None

    def run(self, label: str, stdins: Mapping[str, bytes]) -> dict[str, AgentReply[Reply]]:
        events: dict[str, TaskEvent] = {}
        # Per-host input goes in files the task reads on the controller: as extra vars it
        # would overflow the command line of ansible-playbook.
        work = self.runs_dir / f"{time.strftime('%Y%m%dT%H%M%S')}-{label}-{uuid.uuid4().hex[:6]}"
        work.mkdir(parents=True, mode=0o700)
        for host, data in stdins.items():
            (work / f"{host}.b64").write_bytes(base64.b64encode(data))
        run = PlaybookRun(
            playbook=bundled_playbook("relctl_agent.yml"), inventory=self.inventory,
            ansible_cfg=self.ansible_cfg, runs_dir=self.runs_dir, limit=",".join(stdins),
            label=label, children=self.children,
            extravars={"relctl_hosts": "all", "relctl_boot": self.boot,
                       "relctl_stdin_dir": str(work)})
        try:
            run_playbook(run, lambda event: events.__setitem__(event.host, event))
        finally:  # the inputs hold snapshot payloads: keep no copy
            shutil.rmtree(work, ignore_errors=True)
        return {host: self._reply(host, events.get(host)) for host in stdins}

    @staticmethod
    def _reply(host: str, event: TaskEvent | None) -> AgentReply[Reply]:
        if event is None:
            return AgentReply(host, False, {}, "the agent task did not run")
        if event.outcome != "ok":
            return AgentReply(host, False, {}, f"{event.outcome}: {event.message}")
        return reply_of(host, 0, event.stdout.encode(), event.message.encode())


@dataclass
class MixedTransport:
    """ssh for the hosts it can reach as Ansible would, Ansible for the others."""

    lean: SshTransport
    ansible: AnsibleTransport

    def run(self, label: str, stdins: Mapping[str, bytes]) -> dict[str, AgentReply[Reply]]:
        by_ssh = {h: d for h, d in stdins.items() if h in self.lean.connections}
        by_ansible = {h: d for h, d in stdins.items() if h not in by_ssh}
        replies = self.lean.run(label, by_ssh) if by_ssh else {}
        if by_ansible:
            replies |= self.ansible.run(label, by_ansible)
        return replies


def transport_for(inventory: Path, ansible_cfg: Path, hosts: list[str], boot: str,
                  runs_dir: Path, cache_dir: Path,
                  children: ChildRecorder | None = None) -> AgentTransport:
    """ssh where it honours the inventory's settings, Ansible elsewhere (or everywhere
    with ``RELCTL_AGENT_TRANSPORT=ansible``)."""
    ansible = AnsibleTransport(inventory, ansible_cfg, boot, runs_dir, children)
    if os.environ.get(TRANSPORT_ENV, "auto") == "ansible":
        return ansible
    lean = resolve_connections(inventory, ansible_cfg, hosts, cache_dir)
    return MixedTransport(SshTransport(lean, boot, runs_dir, children), ansible)
