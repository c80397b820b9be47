"""The launcher every child of relctl runs under (``python -m controller.adapters.launcher``).

relctl's children (ansible-playbook, pytest, Locust) do their work in processes of their
own: Ansible forks workers and ssh, Locust greenlets, pytest runs Ansible. A controller
killed with SIGKILL cannot stop them, and ansible-runner starts ansible-playbook in a
new session that ignores SIGHUP. So each child starts as this launcher, which

1. asks the kernel to send it SIGTERM when the controller dies (``PR_SET_PDEATHSIG``),
   and exits at once if the controller is already gone;
2. leads a process group of its own, which the real program and everything it forks
   belong to;
3. writes its pid and create time to the record file the controller named (journaled
   before the launcher started), before the real program starts;
4. runs the program; on SIGTERM, SIGHUP or SIGINT it stops the whole group (SIGTERM,
   then SIGKILL after a grace period) and exits.

It imports only the standard library and psutil, so it starts in a few milliseconds.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

import psutil

PROGRAM_ENV = "RELCTL_CHILD_PROGRAM"  # the program, when the arguments come without it
PARENT_ENV = "RELCTL_CHILD_PARENT"  # the controller's pid
RECORD_ENV = "RELCTL_CHILD_RECORD"  # where to write {"pid", "started", "program"}
# Set for the program and inherited by all it starts: the launcher's "pid:create time".
# Ansible's workers start sessions of their own, and orphans lose their parent, so this
# is how a process still belonging to a recorded child is told after the tree is gone.
OWNER_ENV = "RELCTL_CHILD_OF"
GRACE_S = 15.0
PR_SET_PDEATHSIG = 1
EXIT_ORPHANED = 125  # the controller died before the program could start
_record: Path | None = None  # the record file the controller named, once known


def main() -> int:
    """Run the program named by the arguments (or $RELCTL_CHILD_PROGRAM + arguments)."""
    program = os.environ.pop(PROGRAM_ENV, "")
    command = [program, *sys.argv[1:]] if program else sys.argv[1:]
    parent = int(os.environ.pop(PARENT_ENV, "0") or 0)
    record = os.environ.pop(RECORD_ENV, "")
    if not command:
        print("usage: launcher PROGRAM [ARG...]", file=sys.stderr)
        return 2
    die_with_parent(signal.SIGTERM)
    if parent and os.getppid() != parent:
        return EXIT_ORPHANED
    if os.getpgrp() != os.getpid():
        os.setpgid(0, 0)
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, _stop_and_exit)
    me = psutil.Process()
    os.environ[OWNER_ENV] = owner_mark(me.pid, me.create_time())
    if record:
        global _record  # noqa: PLW0603 - read by the signal handler
        _record = Path(record)
        write_record(_record, command[0])
    try:
        # The launcher has one thread, so preexec_fn is safe here.
        child = subprocess.Popen(command, preexec_fn=_program_dies_with_launcher)  # noqa: PLW1509
    except OSError as error:
        print(f"relctl launcher: cannot run {command[0]}: {error}", file=sys.stderr)
        return 127
    code = child.wait()
    return code if code >= 0 else 128 - code


def die_with_parent(signum: int) -> None:
    """Have the kernel send ``signum`` when the parent thread dies (Linux; else nothing)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)


def _program_dies_with_launcher() -> None:
    die_with_parent(signal.SIGTERM)


def write_record(path: Path, program: str) -> None:
    """Write this process's pid and create time, atomically and durably."""
    me = psutil.Process()
    data = {"pid": me.pid, "started": me.create_time(), "program": Path(program).name}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    with partial.open("w") as handle:
        json.dump(data, handle)
        handle.flush()
        os.fsync(handle.fileno())
    partial.replace(path)


def owner_mark(pid: int, started: float) -> str:
    """The value of ``$RELCTL_CHILD_OF`` for a launcher."""
    return f"{pid}:{started:.2f}"


def _stop_and_exit(signum: int, _frame: FrameType | None) -> None:
    for each in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(each, signal.SIG_IGN)
    me = psutil.Process()
    procs = members(me.pid, me.create_time(), exclude=me.pid)
    if _record is not None:  # what ran on hosts over these connections is stopped there
        with contextlib.suppress(OSError):
            connections_file(_record).write_text(json.dumps({
                "connections": connections_of(procs), "at": time.time(),
                "age_s": time.time() - me.create_time()}))
    stop_members(procs)
    os._exit(128 + signum)


def connections_file(record: Path) -> Path:
    """Where a launcher stopped by a signal leaves the ssh connections its child held."""
    return record.with_name(f"{record.stem}.connections.json")


def connections_of(procs: list[psutil.Process]) -> list[str]:
    """The established TCP connections ``procs`` use, each as the host's sshd names it in
    ``SSH_CONNECTION`` ("client port server port"): their own, and those of the ssh
    ControlPersist masters whose sockets sit where their ssh commands' ``ControlPath``
    points (a master may have been opened by anyone; the mux clients are ``procs``)."""
    holders = {proc.pid: proc for proc in procs}
    folders = set()
    for proc in procs:
        with contextlib.suppress(OSError, psutil.Error):
            folders.update(_control_folders(proc.cmdline()))
    if folders:
        with contextlib.suppress(OSError, psutil.Error):
            for sock in psutil.net_connections(kind="unix"):
                if sock.pid and isinstance(sock.laddr, str) and \
                        os.path.dirname(sock.laddr) in folders:
                    with contextlib.suppress(psutil.Error):
                        holders.setdefault(sock.pid, psutil.Process(sock.pid))
    found = set()
    for proc in holders.values():
        with contextlib.suppress(OSError, psutil.Error):
            for conn in proc.net_connections(kind="tcp"):
                if conn.status == psutil.CONN_ESTABLISHED and conn.raddr:
                    found.add(f"{conn.laddr.ip} {conn.laddr.port} "
                              f"{conn.raddr.ip} {conn.raddr.port}")
    return sorted(found)


def _control_folders(argv: list[str]) -> set[str]:
    """The folders of the ``ControlPath`` options in an ssh command line (token-free)."""
    folders = set()
    for arg in argv:
        value = arg.removeprefix("-o").strip()
        if value.lower().startswith("controlpath="):
            folder = os.path.dirname(value.split("=", 1)[1].strip("\"'"))
            if folder and "%" not in folder:
                folders.add(folder)
    return folders


def members(pid: int, started: float, exclude: int = 0) -> list[psutil.Process]:
    """The live processes of the child whose launcher is ``pid``, created at ``started``:
    the launcher's descendants, its process group, and every process that carries its
    mark (created since), whoever its parent is now."""
    found: dict[int, psutil.Process] = {}
    with contextlib.suppress(psutil.Error):
        launcher = psutil.Process(pid)
        if abs(launcher.create_time() - started) < 0.01:
            found.update({p.pid: p for p in [launcher, *launcher.children(recursive=True)]})
    mark = owner_mark(pid, started)
    for proc in psutil.process_iter(["pid"]):
        if proc.pid in found:
            continue
        try:
            if proc.create_time() < started - 0.01:
                continue
            if os.getpgid(proc.pid) == pid or proc.environ().get(OWNER_ENV) == mark:
                found[proc.pid] = proc
        except (OSError, psutil.Error):
            continue
    return [p for p in found.values() if p.pid != exclude and _live(p)]


def stop_members(procs: list[psutil.Process], grace_s: float = GRACE_S) -> list[int]:
    """SIGTERM every process, SIGKILL those alive after ``grace_s``; returns the pids."""
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    deadline = time.monotonic() + grace_s
    alive = procs
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [p for p in alive if _live(p)]
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    return [p.pid for p in procs]


def _live(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


if __name__ == "__main__":
    sys.exit(main())
