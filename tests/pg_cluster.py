"""A throwaway PostgreSQL cluster for tests, from Debian's ``postgresql`` package.

The cluster lives in its own temporary folder (owned by ``postgres``: the server refuses
to run as root), listens only on one loopback address (``127.0.70.1`` by default) on a
free port, keeps its unix sockets in that folder, and is stopped by its data directory
(``pg_ctl stop``), falling back to the pid in ``postmaster.pid``: never by name.

TCP connections need a password (scram-sha-256), so URLs carry one, as a real journal
URL would; the superuser connects through the unix socket without one.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

PG_BIN = Path(os.environ.get("RELCTL_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
ADDRESS = "127.0.70.1"
USER = "relctl"


def missing_binaries() -> str | None:
    """Why no cluster can be started here, or None when it can."""
    for tool in ("initdb", "pg_ctl", "postgres"):
        if not (PG_BIN / tool).exists():
            return f"{PG_BIN / tool} is missing (Debian package postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root, and there is no postgres user to run the server as"
    return None


def free_port(address: str) -> int:
    """A TCP port nothing listens on at ``address`` right now."""
    with socket.socket() as probe:
        probe.bind((address, 0))
        return int(probe.getsockname()[1])


@dataclass
class PgCluster:
    """One running cluster: its folder, address and port, and the test role's password."""

    root: Path
    address: str = ADDRESS
    port: int = 0
    password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    fsync: bool = True
    _databases: int = 0

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def sockets(self) -> Path:
        return self.root / "sockets"

    def url(self, database: str) -> str:
        """The journal URL of ``database`` (with the password: never print it)."""
        return f"postgresql://{USER}:{self.password}@{self.address}:{self.port}/{database}"

    def start(self) -> None:
        """initdb, then start the server and create the test role."""
        self.sockets.mkdir(parents=True)
        pwfile = self.root / "pw"
        pwfile.write_text(self.password + "\n")
        _give_to_postgres(self.root)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--no-sync",
                  "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}")
        pwfile.unlink()
        self.port = free_port(self.address)
        fsync = "on" if self.fsync else "off"
        options = (f"-c listen_addresses={self.address} -p {self.port} "
                   f"-c unix_socket_directories={self.sockets} -c fsync={fsync}"
                   " -c max_connections=60")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"),
                  "-o", options, "-w", "-t", "60", "start")
        self.sql(f"CREATE ROLE {USER} LOGIN CREATEDB PASSWORD '{self.password}'")

    def create_database(self) -> str:
        """A new empty database owned by the test role; its journal URL."""
        self._databases += 1
        name = f"journal_{self._databases}"
        self.sql(f"CREATE DATABASE {name} OWNER {USER}")
        return self.url(name)

    def sql(self, statement: str) -> str:
        """Run one statement as the superuser over the unix socket; its output."""
        return self._run("psql", "-X", "-q", "-A",
                         "-t", "-h", str(self.sockets), "-p", str(self.port), "-U", "postgres",
                         "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c", statement)

    def stop(self) -> None:
        """Stop the server (by its data directory, else by the pid it recorded); remove
        the folder."""
        if (self.data / "postmaster.pid").exists():
            try:
                self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "30", "stop")
            except subprocess.CalledProcessError:
                _kill_postmaster(self.data)
        shutil.rmtree(self.root, ignore_errors=True)

    def _run(self, tool: str, *args: str) -> str:
        path = PG_BIN / tool
        command = [str(path) if path.exists() else tool, *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, cwd=self.root, capture_output=True, text=True,
                              timeout=120, check=False)
        if done.returncode != 0:
            raise subprocess.CalledProcessError(done.returncode, command[:6], done.stdout,
                                                done.stderr)
        return done.stdout


def start_cluster(address: str = ADDRESS, *, fsync: bool = True) -> PgCluster:
    """A started cluster in a new temporary folder (``/tmp`` is world-traversable, so the
    ``postgres`` user can reach it)."""
    root = Path(tempfile.mkdtemp(prefix="relctl-pg-", dir="/tmp"))
    cluster = PgCluster(root, address, fsync=fsync)
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _give_to_postgres(root: Path) -> None:
    if os.geteuid() != 0:
        return
    owner = pwd.getpwnam("postgres")
    for path in (root, *root.rglob("*")):
        os.chown(path, owner.pw_uid, owner.pw_gid)
    root.chmod(0o700)


def _kill_postmaster(data: Path) -> None:
    """SIGQUIT (immediate shutdown) to the pid the server wrote, then wait for it."""
    try:
        pid = int((data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    try:
        os.kill(pid, signal.SIGQUIT)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
