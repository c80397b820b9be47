"""Children relctl owns: started under the launcher, recorded, and stopped by pid.

    with owned_child(recorder, "apply:canary", "ansible-playbook") as child:
        ...start the program with child.env, child.argv(...) or child.binary...

``recorder.before`` journals the child before it starts (the record file named there
receives the launcher's pid and create time before the program runs); ``recorder.after``
closes the row. ``stop_recorded`` is what ``resume`` and ``unlock`` use on the children of
a dead controller: the launcher's process group, checked by pid and create time.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

import psutil

from controller.adapters import launcher


@dataclass(frozen=True, slots=True)
class ChildPid:
    """Where a child's launcher runs: its pid and create time (from its record file)."""

    pid: int
    started: float


class ChildRecorder(Protocol):
    """The journal side: a row before the child starts, updated as it runs and ends."""

    def before(self, label: str, program: str) -> tuple[int, Path]:
        """Record a child about to start; returns its id and its record file."""

    def running(self, child_id: int, pid: ChildPid) -> None:
        """The child's launcher runs as ``pid``."""

    def after(self, child_id: int, exit_code: int | None, stopped: bool = False) -> None:
        """The child has ended (``stopped``: relctl stopped it, or what it left running)."""


@dataclass
class OwnedChild:
    """How to start one owned child: the launcher's command, binary and environment."""

    program: str
    env: dict[str, str]
    record: Path | None = None
    child_id: int = 0
    pid: ChildPid | None = None
    recorder: ChildRecorder | None = field(default=None, repr=False)
    exit_code: int | None = None  # set by the caller when it knows it
    cut_short: bool = False  # the caller cancelled it or it timed out: sweep what it left
    stopped: list[int] = field(default_factory=list)  # pids relctl had to stop
    # When cut short: the ssh connections relctl's children held at that moment (their
    # SSH_CONNECTION on the hosts), so what the child left running there can be stopped.
    connections: list[str] = field(default_factory=list)

    def argv(self, command: list[str]) -> list[str]:
        """``command`` run under the launcher (for ``subprocess``)."""
        return [sys.executable, "-m", "controller.adapters.launcher", *command]

    def binary(self, runs_dir: Path) -> str:
        """An executable that runs the launcher with ``self.program`` (for ansible-runner's
        ``binary``, which takes one path and appends the program's arguments)."""
        script = runs_dir / "relctl-launcher"
        text = (f"#!{sys.executable}\nfrom controller.adapters.launcher import main\n"
                "raise SystemExit(main())\n")
        if not script.exists() or script.read_text() != text:
            runs_dir.mkdir(parents=True, exist_ok=True)
            partial = script.with_suffix(".partial")
            partial.write_text(text)
            partial.chmod(0o755)
            partial.replace(script)
        return str(script)

    def seen(self) -> ChildPid | None:
        """The launcher's pid once its record file exists (journaled the first time)."""
        if self.pid is None and self.record is not None:
            self.pid = read_record(self.record)
            if self.pid is not None and self.recorder is not None:
                self.recorder.running(self.child_id, self.pid)
        return self.pid


@contextlib.contextmanager
def owned_child(recorder: ChildRecorder | None, label: str,
                program: str) -> Iterator[OwnedChild]:
    """Record a child (when there is a recorder), yield how to start it, close its row.

    When the block ends early (an exception, or ``child.cut_short``: a cancel or a
    timeout), nothing the child started outlives it: every process still carrying its
    launcher's mark (Ansible's workers in sessions of their own, left behind when a
    cancel kills the launcher's group) is stopped, by pid and create time, and the row
    says the child was stopped rather than that it ended. A child that ended by itself
    keeps what it meant to leave (the ssh ControlPersist masters relctl closes last)."""
    env = {launcher.PARENT_ENV: str(os.getpid())}
    child = OwnedChild(program, env, recorder=recorder)
    scratch: Path | None = None
    if recorder is not None:
        child.child_id, child.record = recorder.before(label, program)
    else:  # not journaled, but its pid is still needed to find what it leaves behind
        scratch = Path(tempfile.mkdtemp(prefix="relctl-child-"))
        child.record = scratch / "record.json"
    env[launcher.RECORD_ENV] = str(child.record)
    ended = False
    try:
        yield child
        ended = True
    finally:
        child.seen()
        if not ended or child.cut_short:
            child.connections = sorted({*child.connections, *ssh_connections(child.record)})
            child.stopped += stop_leftovers(child.pid)
        if ended and child.exit_code is None and not child.cut_short:
            child.exit_code = 0
        if recorder is not None:
            recorder.after(child.child_id, None if child.cut_short else child.exit_code,
                           stopped=child.cut_short or bool(child.stopped))
        if child.record is not None:
            child.record.unlink(missing_ok=True)
            launcher.connections_file(child.record).unlink(missing_ok=True)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def ssh_connections(record: Path | None = None) -> list[str]:
    """The TCP connections held by processes of relctl's children (ssh and its
    ControlPersist masters, whichever child started them), and those a launcher stopped
    by a signal left in its record's side file, as the ``SSH_CONNECTION`` the hosts' sshd
    sets: "client-address client-port server-address server-port"."""
    marked = []
    for proc in psutil.process_iter(["pid"]):
        with contextlib.suppress(OSError, psutil.Error):
            if launcher.OWNER_ENV in proc.environ():
                marked.append(proc)
    return sorted({*launcher.connections_of(marked), *left_connections(record).connections})


@dataclass(frozen=True)
class LeftConnections:
    """What a launcher stopped by a signal noted beside its record file: the ssh
    connections its child held, and how long before now (this clock) the child began."""

    connections: list[str]
    age_s: float


def left_connections(record: Path | None) -> LeftConnections:
    """The connections a launcher stopped by a signal wrote beside its record file."""
    empty = LeftConnections([], 0.0)
    if record is None:
        return empty
    try:
        data = json.loads(launcher.connections_file(record).read_text())
        since = max(0.0, time.time() - float(data["at"]))
        return LeftConnections([str(c) for c in data["connections"]],
                               float(data["age_s"]) + since)
    except (OSError, ValueError, TypeError, KeyError):
        return empty


def stop_leftovers(pid: ChildPid | None, settle_s: float = 10.0) -> list[int]:
    """Stop every process left of a child whose program has returned, and wait until
    none is alive (``settle_s`` at most after the SIGKILL); the pids stopped."""
    if pid is None:
        return []
    stopped = stop_recorded(pid)
    deadline = time.monotonic() + settle_s
    while stopped and alive_of(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return stopped


def run_owned(child: OwnedChild, command: list[str], *, env: dict[str, str],
              timeout: float | None = None, stdout: IO[str] | int | None = None,
              stderr: IO[str] | int | None = None) -> int:
    """Run ``command`` under the launcher and wait; returns its exit code.

    Whatever interrupts the wait (a timeout, Ctrl-C) stops the launcher with SIGTERM, so
    it takes its whole process group down with it."""
    process = start_owned(child, command, env=env, stdout=stdout, stderr=stderr)
    return wait_all([process], timeout)[0]


def start_owned(child: OwnedChild, command: list[str], *, env: dict[str, str],
                stdout: IO[str] | IO[bytes] | int | None = None,
                stderr: IO[str] | IO[bytes] | int | None = None) -> subprocess.Popen[bytes]:
    """Start ``command`` under the launcher in a session of its own; see ``stop_owned``."""
    process = subprocess.Popen(child.argv(command), env={**env, **child.env},
                               stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                               start_new_session=True)
    child.seen()
    return process


def wait_all(processes: list[subprocess.Popen[bytes]], timeout: float | None) -> list[int]:
    """Wait for every process; past ``timeout`` (or on any interruption) stop them all
    with ``stop_owned``; their exit codes."""
    deadline = None if timeout is None else time.monotonic() + timeout
    codes = []
    try:
        for process in processes:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                codes.append(process.wait(timeout=left))
            except subprocess.TimeoutExpired:
                codes.append(stop_owned(process))
    finally:
        for process in processes:
            if process.poll() is None:
                stop_owned(process)
    return codes


def stop_owned(process: subprocess.Popen[bytes], grace_s: float = 30.0) -> int:
    """SIGTERM the launcher (it stops its group), then SIGKILL it after ``grace_s``."""
    if process.poll() is None:
        process.terminate()
    try:
        return process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def read_record(path: Path) -> ChildPid | None:
    """The pid and create time a launcher wrote, or None (not written yet, or unreadable)."""
    try:
        data = json.loads(path.read_text())
        return ChildPid(int(data["pid"]), float(data["started"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def stop_recorded(pid: ChildPid | None) -> list[int]:
    """Stop what is left of a recorded child: its launcher when the pid is still that
    process, with its descendants, its process group and every process carrying its
    mark (the launcher may be gone while what it started still runs). Returns the pids
    stopped."""
    if pid is None:
        return []
    return launcher.stop_members(launcher.members(pid.pid, pid.started))


def alive_of(pid: ChildPid) -> list[int]:
    """The pids still running for a recorded child (for checks and reports)."""
    return [p.pid for p in launcher.members(pid.pid, pid.started)]
