"""Start and stop lab host processes, by pid only (psutil), never by name."""

from __future__ import annotations

import contextlib
import getpass
import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from controller.errors import LabError
from controller.models.lab import HostProcess


def spawn_namespaced(command: list[str], log: Path, timeout: float = 5.0) -> HostProcess:
    """Start ``command`` (an ``unshare --fork`` line) detached; return it and its child."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
        )
    deadline = time.monotonic() + timeout
    parent = psutil.Process(proc.pid)
    while time.monotonic() < deadline:
        children = _children(parent)
        if children:
            child = children[0]
            return HostProcess(
                unshare_pid=proc.pid, sshd_pid=child.pid, sshd_started=child.create_time()
            )
        if proc.poll() is not None:
            break
        time.sleep(0.01)
    detail = log.read_text(errors="replace")[-800:] if log.exists() else ""
    raise LabError(f"the namespace for {command[-1][:60]}… did not start: {detail.strip()}")


def _children(parent: psutil.Process) -> list[psutil.Process]:
    try:
        return parent.children()
    except psutil.NoSuchProcess:
        return []


def is_running(process: HostProcess) -> bool:
    """True when the recorded sshd is still the same live process (not a reused pid)."""
    return same_process(process.sshd_pid, process.sshd_started)


def stop(*hosts: HostProcess, timeout: float = 5.0) -> list[int]:
    """Stop hosts: end each PID 1 (the kernel ends the rest), then their unshare.

    Returns the pids that would not die.
    """
    targets = [p for h in hosts for p in (_same(h.sshd_pid, h.sshd_started), _proc(h.unshare_pid))]
    return terminate_all([p for p in targets if p is not None], timeout)


def kill_hosts(hosts: list[HostProcess]) -> None:
    """SIGKILL the PID 1 of every host (the kernel ends everything in its namespace) in
    one pass, then wait for them all: a site lost at once (host after host, the later
    ones would see the earlier ones gone, e.g. a service whose database died first)."""
    found = [p for h in hosts if (p := _same(h.sshd_pid, h.sshd_started)) is not None]
    for proc in found:
        _signal(proc, kill=True)
    _wait_gone(found, 5.0)


def kill_in_host(process: HostProcess, needle: str) -> list[int]:
    """SIGKILL the processes inside a host whose command line contains ``needle``."""
    host = _same(process.sshd_pid, process.sshd_started)
    if host is None:
        return []
    victims = []
    for child in host.children(recursive=True):
        try:
            if needle in " ".join(child.cmdline()):
                victims.append(child)
        except psutil.Error:
            continue
    for victim in victims:
        _signal(victim, kill=True)
    _wait_gone(victims, 5.0)
    return [v.pid for v in victims]


def terminate_all(procs: list[psutil.Process], timeout: float = 5.0) -> list[int]:
    """SIGTERM, wait, then SIGKILL what remains; returns pids that would not die."""
    for proc in procs:
        _signal(proc, kill=False)
    alive = _wait_gone(procs, timeout)
    for proc in alive:
        _signal(proc, kill=True)
    return [p.pid for p in _wait_gone(alive, timeout)]


def _wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until every process has exited; a zombie counts as gone (it runs nothing).

    Our unshare processes are orphans once the ``lab up`` that started them exits, and
    their reaping is up to the machine's init, so waiting for the pid to vanish could
    stall for no reason.
    """
    deadline = time.monotonic() + timeout
    alive = list(procs)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if is_live(p)]
        if alive:
            time.sleep(0.02)
    return alive


def is_live(proc: psutil.Process) -> bool:
    """True while ``proc`` runs (a zombie has ended: only its reaping is left)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _signal(proc: psutil.Process, *, kill: bool) -> None:
    with contextlib.suppress(psutil.NoSuchProcess):
        proc.kill() if kill else proc.terminate()


def _same(pid: int, started: float) -> psutil.Process | None:
    return _proc(pid) if same_process(pid, started) else None


def _proc(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None


def pids_alive(pids: list[int]) -> list[int]:
    """The pids among ``pids`` that belong to live, non-zombie processes."""
    return [pid for pid in pids if process_identity(pid) is not None]


@dataclass(frozen=True, slots=True)
class ProcessIdentity:
    """Who and where a process is: enough to tell later whether it still runs."""

    user: str
    host: str
    pid: int
    started: float


def process_identity(pid: int) -> float | None:
    """The create time of live process ``pid``, or None when it is gone or a zombie."""
    proc = _proc(pid)
    try:
        if proc is None or proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc.create_time()
    except psutil.NoSuchProcess:
        return None


def same_process(pid: int, started: float) -> bool:
    """True when ``pid`` is alive and is the process created at ``started`` (not reused)."""
    created = process_identity(pid)
    return created is not None and abs(created - started) < 0.01


def current_identity() -> ProcessIdentity:
    """This process: user, host name, pid and create time."""
    pid = os.getpid()
    started = psutil.Process(pid).create_time()
    return ProcessIdentity(_user_name(), socket.gethostname(), pid, started)


def _user_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no $USER (some containers)
        return str(os.getuid())
