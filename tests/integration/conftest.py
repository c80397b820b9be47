"""The real staging lab for integration tests: namespaced sshd hosts behind HAProxy; and
the session's PostgreSQL server (tests that need one are integration tests).

Each lab uses its own state directory under /var/tmp (not /tmp: every lab host mounts
its own /tmp) and its own loopback addresses, so tests never collide with a demo lab.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.pg_cluster import PgCluster, missing_binaries, start_cluster
from tests.relctl_cli import LEDGER_SERVICE, deploy_ledger, relctl, relctl_json

LAB_PARENT = Path("/var/tmp/relctl-tests")


def _skip_without_lab() -> None:
    if os.geteuid() != 0 or shutil.which("haproxy") is None or not Path("/usr/sbin/sshd").exists():
        pytest.skip("the staging lab needs root, openssh-server and haproxy (run make test)")


@dataclass
class RunningLab:
    """A lab brought up for a test, and how to reach it."""

    state_dir: Path
    status: dict[str, Any]

    @property
    def url(self) -> str:
        return str(self.status["url"])

    @property
    def inventory(self) -> Path:
        return Path(self.status["inventory"])

    @property
    def ansible_cfg(self) -> Path:
        return Path(self.status["ansible_cfg"])

    def hosts(self, group: str | None = None) -> list[dict[str, Any]]:
        return [h for h in self.status["hosts"] if group in (None, h["group"])]

    def lab_pids(self) -> list[int]:
        """Every process the lab runs: each host's sshd and all that runs inside it."""
        pids = []
        for host in self.hosts():
            proc = psutil.Process(host["pid"])
            pids += [proc.pid, proc.ppid(), *(c.pid for c in proc.children(recursive=True))]
        return pids


def new_state_dir() -> Path:
    path = LAB_PARENT / uuid.uuid4().hex[:8]
    path.mkdir(parents=True)
    return path


def start_lab(primary: int, backup: int, base_address: str, *,
              postgresql: bool = False, round_robin: bool = False) -> RunningLab:
    """The one way tests bring up a lab (``relctl lab up``, fronting the sample ledger) in
    a new state directory; ``postgresql``: a PostgreSQL cluster on each app host (skipped
    without Debian's postgresql package); ``round_robin``: ledger balanced active/active.
    Stop it with ``stop_lab``. Only test_lab (``lab
    up`` itself under test) and test_wheel (the installed wheel's relctl) run ``lab up``
    their own way."""
    _skip_without_lab()
    if postgresql and (why := missing_binaries()) is not None:
        pytest.skip(why)
    state_dir = new_state_dir()
    up = relctl(state_dir, "lab", "up", "--primary", str(primary), "--backup", str(backup),
                *(["--postgresql"] if postgresql else []),
                *(["--round-robin", "ledger"] if round_robin else []),
                "--base-address", base_address, "--service", LEDGER_SERVICE)
    if up.returncode != 0:
        relctl(state_dir, "lab", "down")  # stop whatever part of it did start
        pytest.fail(f"lab up failed:\n{up.stderr}")
    return RunningLab(state_dir, relctl_json(state_dir, "lab", "status"))


def stop_lab(lab: RunningLab) -> None:
    down = relctl(lab.state_dir, "lab", "down")
    assert down.returncode == 0, down.stderr
    shutil.rmtree(lab.state_dir, ignore_errors=True)


@contextmanager
def ledger_lab(primary: int, backup: int, base_address: str, *,
               round_robin: bool = False) -> Iterator[RunningLab]:
    """``start_lab`` with ledger 1.0.0 deployed to its primary site (plain Ansible);
    stopped on leaving."""
    running = start_lab(primary, backup, base_address, round_robin=round_robin)
    try:
        deployed = deploy_ledger(running.state_dir, "1.0.0")
        assert deployed.returncode == 0, deployed.stderr
        yield running
    finally:
        stop_lab(running)


def session_lab_address() -> str:
    """The session lab's first address: 127.0.9.10, or 127.0.(9+N).10 on pytest-xdist's
    worker gwN (``make test`` runs modules on two workers, each whole on one of them, and
    each worker that runs a module of the session lab brings up its own)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return f"127.0.{9 + int(worker.removeprefix('gw') or 0)}.10"


@pytest.fixture(scope="session")
def lab() -> Iterator[RunningLab]:
    """A lab shared by the session: 2 primary hosts and 1 backup at 127.0.9.10 (see
    ``session_lab_address``)."""
    running = start_lab(primary=2, backup=1, base_address=session_lab_address())
    yield running
    stop_lab(running)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """One PostgreSQL cluster for the session, on 127.0.70.1 and a free port, stopped
    (by its data directory) and removed at the end."""
    why = missing_binaries()
    if why is not None:
        pytest.skip(f"no PostgreSQL to test with: {why}")
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: PgCluster) -> str:
    """The URL of a new, empty database (a journal of its own for one test)."""
    return pg_cluster.create_database()
