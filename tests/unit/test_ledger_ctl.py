"""bin/ledgerctl: daemonized start, status, stop with a pid file."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.ledger_support import harness


@pytest.fixture
def config(tmp_path: Path) -> Iterator[Path]:
    """A config in tmp_path; kills a daemon left behind by a failed test."""
    path = harness.write_config(tmp_path, harness.free_port())
    yield path
    pidfile = tmp_path / "ledger.pid"
    if pidfile.exists():
        with contextlib.suppress(ValueError, ProcessLookupError):
            os.kill(int(pidfile.read_text()), signal.SIGKILL)


def ctl(release: Path, command: str, config: Path) -> tuple[int, str]:
    result = harness.run_tool(release, "ledgerctl", command, "--config", str(config))
    return result.returncode, result.stdout + result.stderr


def test_start_status_stop(releases: dict[str, Path], config: Path) -> None:
    release, pidfile = releases["1.1.0"], config.parent / "ledger.pid"
    assert ctl(release, "status", config)[0] == 3
    rc, out = ctl(release, "start", config)
    assert rc == 0, out
    assert "ledger 1.1.0 started" in out
    pid = int(pidfile.read_text())
    assert os.getsid(pid) not in (pid, os.getsid(0))  # double fork: new session, not leader
    rc, out = ctl(release, "start", config)
    assert (rc, "already running" in out) == (0, True)
    rc, out = ctl(release, "status", config)
    assert (rc, "ledger 1.1.0 running" in out) == (0, True)
    rc, out = ctl(release, "stop", config)
    assert (rc, "ledger stopped" in out) == (0, True)
    assert not pidfile.exists()
    assert ctl(release, "status", config)[0] == 3
    assert ctl(release, "stop", config) == (0, "ledger not running\n")
    assert "ledger 1.1.0 stopped" in (config.parent / "ledger.log").read_text()


def test_restart_switches_code(releases: dict[str, Path], config: Path) -> None:
    assert ctl(releases["1.0.0"], "start", config)[0] == 0
    rc, out = ctl(releases["1.1.0"], "restart", config)
    assert rc == 0, out
    port = int(config.read_text().split("port = ")[1].split()[0])
    assert harness.request(port, "GET", "/version")[1] == {"version": "1.1.0"}
    assert ctl(releases["1.1.0"], "stop", config)[0] == 0


def test_stale_pidfile_is_ignored(releases: dict[str, Path], config: Path) -> None:
    (config.parent / "ledger.pid").write_text(f"{os.getpid()}\n")  # alive, but not ledger
    assert ctl(releases["1.0.0"], "status", config)[0] == 3
    assert ctl(releases["1.0.0"], "start", config)[0] == 0
    assert ctl(releases["1.0.0"], "stop", config)[0] == 0


def test_start_fails_with_log_tail_on_schema_mismatch(
    releases: dict[str, Path], config: Path
) -> None:
    assert ctl(releases["1.2.0"], "start", config)[0] == 0
    assert ctl(releases["1.2.0"], "stop", config)[0] == 0
    rc, out = ctl(releases["1.0.0"], "start", config)
    assert rc == 1
    assert "ledger 1.0.0 failed to start (exited)" in out
    assert "refusing to start ledger 1.0.0" in out
    assert not (config.parent / "ledger.pid").exists()
    assert ctl(releases["1.0.0"], "status", config)[0] == 3
