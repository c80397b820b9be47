"""The agent's ``stop_sessions``: what a cancelled playbook left on a host is stopped, by
its ssh connection and start time, and nothing else (run as the host runs it)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import psutil

from tests.unit.agent_run import agent

# The connection relctl held when it cancelled: a port of this run's own, so that two runs
# of the suite on one machine never stop each other's sessions.
CUT = f"127.0.0.1 {40000 + os.getpid() % 20000} 127.0.0.9 22"


def session(tmp_path: Path, connection: str, name: str,
            delay: int = 3) -> subprocess.Popen[bytes]:
    """A shell as sshd starts one, which starts a child that writes a file later."""
    script = f"(sleep {delay} && echo late > {tmp_path / name}) & wait"
    return subprocess.Popen(["sh", "-c", script], start_new_session=True,
                            env={**os.environ, "SSH_CONNECTION": connection})


def tree(process: subprocess.Popen[bytes]) -> list[psutil.Process]:
    parent = psutil.Process(process.pid)
    return [parent, *parent.children(recursive=True)]


def test_the_cut_connections_processes_and_children_stop_and_write_nothing(
        tmp_path: Path) -> None:
    older = session(tmp_path, CUT, "older", 7)  # started before the release: not its work
    time.sleep(3)
    cut = session(tmp_path, CUT, "cut")
    other = session(tmp_path, CUT.replace("127.0.0.1 ", "127.0.0.2 "), "other")  # not ours
    time.sleep(0.3)
    cut_tree = tree(cut)
    try:
        reply = agent({"command": "stop_sessions", "connections": [CUT], "max_age_s": 2.0})
        assert reply["ok"], reply
        assert {p["pid"] for p in reply["stopped"]} == {p.pid for p in cut_tree}
        assert any("sleep 3" in p["command"] for p in reply["stopped"])
        cut.wait(timeout=5)
        older.wait(timeout=10)
        other.wait(timeout=10)
        assert not (tmp_path / "cut").exists()  # the stopped work wrote nothing
        assert (tmp_path / "other").read_text() == "late\n"  # the others finished
        assert (tmp_path / "older").read_text() == "late\n"
    finally:
        for process in (older, cut, other):
            if process.poll() is None:
                process.kill()
            process.wait()


def test_no_connection_named_stops_nothing() -> None:
    reply = agent({"command": "stop_sessions", "connections": [], "max_age_s": 60.0})
    assert reply == {"ok": True, "stopped": [], "left": []}
