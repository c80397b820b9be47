"""HAProxy's runtime API (the "stats socket"), reached over TCP or a unix socket."""

from __future__ import annotations

import csv
import io
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from controller.errors import InputError, LabError
from controller.models.base import HAPROXY_NAME_PATTERN

SERVER_STATES = ("ready", "drain", "maint")
SERVER_HEALTH = ("up", "stopping", "down")


def checked_name(what: str, name: str) -> str:
    """``name`` when HAProxy's runtime API can take it as one word of a command; a name
    with a space, ``;`` or a newline would add words or commands of its own."""
    if not re.fullmatch(HAPROXY_NAME_PATTERN, name) or len(name) > 100:
        raise InputError(f"invalid HAProxy {what} name {name!r}: letters, digits and . _ : - "
                         "only, starting with a letter or digit")
    return name


def _target(backend: str, server: str) -> str:
    return f"{checked_name('backend', backend)}/{checked_name('server', server)}"


@dataclass(frozen=True)
class BackendServer:
    """One server of one backend, as HAProxy sees it now."""

    backend: str
    server: str
    address: str
    status: str  # UP, DOWN, MAINT, no check, ...
    backup: bool
    weight: int
    sessions: int = 0  # requests in progress on it now (``scur``)


MAX_WEIGHT = 256  # HAProxy's highest server weight


@dataclass(frozen=True)
class RuntimeApi:
    """A client of one HAProxy runtime API endpoint: ``host:port`` or a socket path."""

    endpoint: str
    timeout: float = 2.0

    def command(self, line: str) -> str:
        """Send one command and return HAProxy's whole answer."""
        try:
            with self._connect() as conn:
                conn.settimeout(self.timeout)
                conn.sendall(line.encode() + b"\n")
                return _read_all(conn)
        except OSError as exc:
            raise LabError(f"HAProxy runtime API at {self.endpoint} did not answer: {exc}") from exc

    def servers(self) -> list[BackendServer]:
        """Every backend server with its status, from ``show stat``."""
        rows = csv.DictReader(io.StringIO(self.command("show stat").lstrip("# ")))
        return [
            BackendServer(
                backend=row["pxname"],
                server=row["svname"],
                address=row.get("addr", ""),
                status=row["status"],
                backup=row.get("bck") == "1",
                weight=int(row.get("weight") or 0),
                sessions=int(row.get("scur") or 0),
            )
            for row in rows
            if row["svname"] not in ("FRONTEND", "BACKEND")
        ]

    def set_state(self, backend: str, server: str, state: str) -> None:
        """``ready``, ``drain`` or ``maint`` one server, at once and without a reload."""
        if state not in SERVER_STATES:
            raise ValueError(f"unknown server state {state!r}")
        self._expect_empty(f"set server {_target(backend, server)} state {state}")

    def set_health(self, backend: str, server: str, health: str) -> None:
        """Force a server's health to ``up``, ``stopping`` or ``down`` (drills)."""
        if health not in SERVER_HEALTH:
            raise ValueError(f"unknown server health {health!r}")
        self._expect_empty(f"set server {_target(backend, server)} health {health}")

    def weight(self, backend: str, server: str) -> int:
        """A server's current weight (``get weight`` answers ``CURRENT (initial INITIAL)``)."""
        answer = self.command(f"get weight {_target(backend, server)}").strip()
        try:
            return int(answer.split()[0])
        except (IndexError, ValueError):
            raise LabError(f"HAProxy refused 'get weight {_target(backend, server)}': "
                           f"{answer}") from None

    def set_weight(self, backend: str, server: str, weight: int) -> None:
        """Set a server's weight (0 to 256) at once, without a reload: its share of a
        round-robin backend's traffic."""
        if not 0 <= weight <= MAX_WEIGHT:
            raise ValueError(f"weight {weight} is not within 0..{MAX_WEIGHT}")
        self._expect_empty(f"set weight {_target(backend, server)} {weight}")

    def server_states(self) -> str:
        """``show servers state`` of every backend: what ``server-state-file`` holds (it
        is global, so every service behind this HAProxy keeps its states across reloads)."""
        return self.command("show servers state")

    def _expect_empty(self, line: str) -> None:
        answer = self.command(line).strip()
        if answer:
            raise LabError(f"HAProxy refused '{line}': {answer}")

    def _connect(self) -> socket.socket:
        if self.endpoint.startswith("/"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            sock.connect(str(Path(self.endpoint)))
            return sock
        host, _, port = self.endpoint.rpartition(":")
        return socket.create_connection((host, int(port)), timeout=self.timeout)


def _read_all(conn: socket.socket) -> str:
    chunks = []
    while chunk := conn.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")
