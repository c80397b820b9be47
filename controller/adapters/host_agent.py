"""relctl's host agent, as the controller runs it: one protocol for every host-side job.

    HostAgent.<command>(label, {host: request}) -> {host: AgentReply[reply]}

The agent is one ``python -c`` program (``AgentProgram``) that reads its sources, then
one request, from stdin, over ``AgentTransport`` (ssh straight over Ansible's
ControlPersist masters, or an Ansible task). Requests and replies are the ``TypedDict``s
of ``controller/agent/protocol.py``, which the agent itself runs first: snapshots and
rollback (capture, restore, verify, services), the continuity copies (copy_data,
load_data), Litestream and stopping what a cancelled release left on a host
(stop_sessions) all go this one way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar, cast

from controller.adapters.agent_transport import AgentReply, AgentTransport, transport_for
from controller.adapters.children import ChildRecorder
from controller.agent import (
    commands,
    confined,
    host_store,
    litestream_agent,
    protocol,
    sessions,
    snapshot_agent,
    sqlite_carry,
    trees,
)
from controller.agent.protocol import (
    CaptureReply,
    CaptureRequest,
    CopyDataReply,
    CopyDataRequest,
    HelloReply,
    HelloRequest,
    LitestreamReply,
    LitestreamRequest,
    LoadDataReply,
    LoadDataRequest,
    Reply,
    RestoreReply,
    RestoreRequest,
    ServicesReply,
    ServicesRequest,
    StopSessionsReply,
    StopSessionsRequest,
    VerifyReply,
    VerifyRequest,
)

# The order the agent runs them in: the protocol first, ``commands.serve`` last.
AGENT_SOURCES = tuple(Path(module.__file__ or "") for module in (
    protocol, confined, snapshot_agent, trees, sqlite_carry, host_store, sessions, litestream_agent,
    commands))

R = TypeVar("R", bound=Reply)
Request = (CaptureRequest | RestoreRequest | VerifyRequest | ServicesRequest
           | CopyDataRequest | LoadDataRequest | LitestreamRequest | StopSessionsRequest
           | HelloRequest)


@dataclass(frozen=True)
class AgentProgram:
    """The agent as one ``python -c`` program that reads its sources, then a request,
    from stdin: nothing is copied to the host first, so one ssh session does it all."""

    sources: tuple[bytes, ...]

    @classmethod
    def load(cls) -> AgentProgram:
        return cls(tuple(path.read_bytes() for path in AGENT_SOURCES))

    @property
    def boot(self) -> str:
        """The ``-c`` program: refuse a Python older than the agent's minimum with a JSON
        reply (before any source is compiled), exec each source in one namespace, serve."""
        low = ".".join(map(str, protocol.MIN_PYTHON))
        head = f'{{"ok": false, "error": "relctl\'s host agent needs Python {low} or newer; this '
        tail = ' (set ansible_python_interpreter)"}'
        refuse = (f"sys.version_info<{protocol.MIN_PYTHON!r} and (sys.stdout.write({head!r}"
                  f"+'host runs '+sys.version.split()[0]+{tail!r}),sys.exit(1))")
        reads = ";".join(f"exec(compile(r.read({len(s)}),'relctl-agent-{n}','exec'),g)"
                         for n, s in enumerate(self.sources))
        return (f"import sys;{refuse};g={{'__name__':'relctl_agent'}};r=sys.stdin.buffer;"
                f"{reads};sys.exit(g['serve']())")

    def stdin(self, request: Request) -> bytes:
        """The agent's whole input: its sources, then the request."""
        return b"".join(self.sources) + json.dumps(request).encode()


@dataclass(frozen=True)
class HostAgent:
    """Runs one agent command on many hosts at once; every host's typed reply."""

    transport: AgentTransport
    program: AgentProgram

    @classmethod
    def reaching(cls, inventory: Path, ansible_cfg: Path, hosts: list[str], runs_dir: Path,
                 cache_dir: Path, children: ChildRecorder | None = None) -> HostAgent:
        """The agent over ssh where the inventory's settings allow it, else Ansible."""
        program = AgentProgram.load()
        return cls(transport_for(inventory, ansible_cfg, hosts, program.boot, runs_dir,
                                 cache_dir, children), program)

    def capture(self, label: str, requests: Mapping[str, CaptureRequest]
                ) -> dict[str, AgentReply[CaptureReply]]:
        return self._run(label, requests, CaptureReply)

    def restore(self, label: str, requests: Mapping[str, RestoreRequest]
                ) -> dict[str, AgentReply[RestoreReply]]:
        return self._run(label, requests, RestoreReply)

    def verify(self, label: str, requests: Mapping[str, VerifyRequest]
               ) -> dict[str, AgentReply[VerifyReply]]:
        return self._run(label, requests, VerifyReply)

    def services(self, label: str, requests: Mapping[str, ServicesRequest]
                 ) -> dict[str, AgentReply[ServicesReply]]:
        return self._run(label, requests, ServicesReply)

    def copy_data(self, label: str, requests: Mapping[str, CopyDataRequest]
                  ) -> dict[str, AgentReply[CopyDataReply]]:
        return self._run(label, requests, CopyDataReply)

    def load_data(self, label: str, requests: Mapping[str, LoadDataRequest]
                  ) -> dict[str, AgentReply[LoadDataReply]]:
        return self._run(label, requests, LoadDataReply)

    def litestream(self, label: str, requests: Mapping[str, LitestreamRequest]
                   ) -> dict[str, AgentReply[LitestreamReply]]:
        return self._run(label, requests, LitestreamReply)

    def stop_sessions(self, label: str, requests: Mapping[str, StopSessionsRequest]
                      ) -> dict[str, AgentReply[StopSessionsReply]]:
        return self._run(label, requests, StopSessionsReply)

    def hello(self, label: str, hosts: list[str]) -> dict[str, AgentReply[HelloReply]]:
        """Each host answers with its Python's version (reachable, and able to run us)."""
        request: HelloRequest = {"command": "hello"}
        return self._run(label, dict.fromkeys(hosts, request), HelloReply)

    def _run(self, label: str, requests: Mapping[str, Request], _reply: type[R]
             ) -> dict[str, AgentReply[R]]:
        replies = self.transport.run(label, {host: self.program.stdin(request)
                                             for host, request in requests.items()})
        # The agent answers each command with its reply type (protocol.py): the JSON is
        # taken as that type here, the one place it crosses from bytes to types.
        return cast(dict[str, AgentReply[R]], replies)
