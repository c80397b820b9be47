"""Helpers to run built ledger releases in tests (importable by path).

Builds and unpacks release tarballs, writes configs, and runs a server in a
subprocess on 127.0.0.1 with an ephemeral port.  Used by tests/unit; usable
from integration tests too::

    spec = importlib.util.spec_from_file_location("ledger_harness", PATH)
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
EXIT_BIND = 4


def load_build() -> ModuleType:
    """Import examples/ledger/build.py by path."""
    spec = importlib.util.spec_from_file_location("ledger_build", HERE / "build.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def unpack(tarball: Path, dest: Path) -> Path:
    """Extract ``tarball`` under ``dest``; return the release root."""
    # build.py's own tarball, made a moment ago; Python before 3.11.4 has no filter=.
    safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    with tarfile.open(tarball) as tar:
        tar.extractall(dest, **safe)
    return dest / tarball.name.removesuffix(".tar.gz")


def prepare_releases(workdir: Path) -> dict[str, Path]:
    """Build every version into ``workdir`` and unpack it: version -> root."""
    build = load_build()
    artifacts = workdir / "artifacts"
    releases = workdir / "releases"
    return {
        version: unpack(build.build(version, artifacts), releases)
        for version in build.list_versions()
    }


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(directory: Path, port: int, db: Path | None = None) -> Path:
    """A ledger.conf in ``directory`` with its db, log and pidfile there too."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "ledger.conf"
    path.write_text(
        "[ledger]\n"
        "bind = 127.0.0.1\n"
        f"port = {port}\n"
        f"db = {db or directory / 'ledger.db'}\n"
        f"log = {directory / 'ledger.log'}\n"
        f"pidfile = {directory / 'ledger.pid'}\n",
        encoding="utf-8",
    )
    return path


def release_env(release: Path) -> dict[str, str]:
    """Environment that runs ``release``'s package with python -m."""
    return {**os.environ, "PYTHONPATH": str(release), "PYTHONDONTWRITEBYTECODE": "1"}


def run_tool(
    release: Path, tool: str, *args: str, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run ``bin/<tool>`` of ``release`` (through its shebang)."""
    return subprocess.run(
        [str(release / "bin" / tool), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )


def run_server_until_exit(
    release: Path, config: Path, timeout: float = 15
) -> subprocess.CompletedProcess[str]:
    """Run a server expected to refuse to start; return its result."""
    return subprocess.run(
        [PYTHON, "-m", "ledger.server", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=release_env(release),
        cwd=release,
    )


def request(
    port: int, method: str, path: str, body: Any = None, timeout: float = 10
) -> tuple[int, Any, dict[str, str]]:
    """One HTTP request; returns status, decoded JSON (or None) and headers."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        payload = None if body is None else json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        conn.request(method, path, body=payload, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        doc = json.loads(raw) if raw else None
        return resp.status, doc, dict(resp.getheaders())
    finally:
        conn.close()


class ServerError(RuntimeError):
    """The server did not come up."""


class Server:
    """A ledger server subprocess for one release and one data directory."""

    def __init__(self, release: Path, datadir: Path, db: Path | None = None) -> None:
        self.release = release
        self.datadir = datadir
        self.db = db or datadir / "ledger.db"
        self.port = 0
        self.proc: subprocess.Popen[str] | None = None
        self.output = datadir / "server.out"

    def start(self, timeout: float = 15) -> Server:
        """Start on a free port (retrying on a port clash) and wait for health."""
        for _ in range(3):
            self.port = free_port()
            config = write_config(self.datadir, self.port, self.db)
            self.output = self.datadir / "server.out"
            with open(self.output, "w", encoding="utf-8") as out:
                self.proc = subprocess.Popen(
                    [PYTHON, "-m", "ledger.server", "--config", str(config)],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    text=True,
                    env=release_env(self.release),
                    cwd=self.release,
                )
            if self._wait_healthy(timeout):
                return self
            if self.proc.returncode != EXIT_BIND:
                break
        output = self.stop()
        raise ServerError(f"ledger server did not start:\n{output}")

    def _wait_healthy(self, timeout: float) -> bool:
        """Poll /health until 200 or the process exits."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            with contextlib.suppress(OSError, http.client.HTTPException):
                if self.get("/health")[0] == 200:
                    return True
            time.sleep(0.05)
        return False

    def stop(self, timeout: float = 10) -> str:
        """SIGTERM, wait (SIGKILL on timeout) and return the server output."""
        if self.proc is None:
            return ""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.output.read_text(encoding="utf-8", errors="replace")

    def get(self, path: str) -> tuple[int, Any, dict[str, str]]:
        """GET ``path``."""
        return request(self.port, "GET", path)

    def post(self, path: str, body: Any) -> tuple[int, Any, dict[str, str]]:
        """POST JSON ``body`` to ``path``."""
        return request(self.port, "POST", path, body)

    def __enter__(self) -> Server:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def running(release: Path, datadir: Path) -> Iterator[Server]:
    """Context manager: a started server."""
    server = Server(release, datadir).start()
    try:
        yield server
    finally:
        server.stop()
