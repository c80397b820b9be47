"""Stopping what a cancelled release left running on a host (the ``stop_sessions`` command).

When relctl cancels a playbook, the ssh connections it ran over close, but sshd sends no
signal to a session without a terminal: the task in flight (a module and the commands it
started) goes on and may write after the rollback. sshd puts ``SSH_CONNECTION`` (client
address and port, server address and port) in the environment of every session, and
every process a session starts inherits it, whatever its parent is now. The controller
names the connections its ssh processes held (``adapters/children.py``); this command
stops, by pid and start time, every process whose ``SSH_CONNECTION`` is one of them and
that started since the cancelled playbook began, with all its descendants: SIGTERM,
then SIGKILL after ``grace_s``. The agent itself and its ancestors are never touched
(it may run over one of those very connections). A daemon the cancelled playbook
started is the release's too and is stopped with the rest; the restore then puts the
service items back in the state the snapshot recorded (running or not).

Linux ``/proc`` only; stdlib only (``protocol.MIN_PYTHON``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

if __name__ != "relctl_agent":  # on a host, protocol.py ran first in this namespace
    from controller.agent.protocol import SessionProcess, StopSessionsReply, StopSessionsRequest

def stop_sessions(request: StopSessionsRequest) -> StopSessionsReply:
    """Stop the processes of the named ssh connections started in the last ``max_age_s``."""
    wanted = set(request["connections"])
    if not wanted:
        return {"ok": True, "stopped": [], "left": []}
    table = _process_table()
    ticks = os.sysconf("SC_CLK_TCK")
    with open("/proc/uptime") as handle:
        now = float(handle.read().split()[0])
    oldest = (now - float(request["max_age_s"])) * ticks
    spared = _ancestors(os.getpid(), table) | {1}
    roots = [pid for pid, (_, start, _) in table.items()
             if pid not in spared and start >= oldest
             and _environ(pid).get("SSH_CONNECTION") in wanted]
    targets = {pid: table[pid][1] for pid in _with_descendants(roots, table, spared)}
    found: list[SessionProcess] = [{"pid": pid, "command": _command(pid)}
                                   for pid in sorted(targets)]
    left = stop_processes(targets, float(request.get("grace_s", 5.0)))
    stopped = [p for p in found if p["pid"] not in left]
    still = [p for p in found if p["pid"] in left]
    reply: StopSessionsReply = {"ok": not still, "stopped": stopped, "left": still}
    if still:
        reply["error"] = (f"{len(still)} process(es) of the cancelled release survived "
                          f"SIGKILL: {', '.join(str(p['pid']) for p in still)}")
    return reply


def _process_table() -> dict[int, tuple[int, int, bool]]:
    """Every process: pid -> (parent pid, start time in clock ticks since boot, alive)."""
    table: dict[int, tuple[int, int, bool]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            info = _stat(int(name))
            if info is not None:
                table[int(name)] = info
    return table


def _stat(pid: int) -> tuple[int, int, bool] | None:
    """(parent pid, start ticks, alive: not a zombie) from /proc/PID/stat, or None when
    the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            text = handle.read().decode("ascii", "replace")
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # the name may hold spaces and ")"
    return int(fields[1]), int(fields[19]), fields[0] not in ("Z", "X")


def _environ(pid: int) -> dict[str, str]:
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            raw = handle.read()
    except OSError:
        return {}
    pairs = (entry.split(b"=", 1) for entry in raw.split(b"\0") if b"=" in entry)
    return {key.decode("utf-8", "replace"): value.decode("utf-8", "replace")
            for key, value in pairs}


def _command(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            raw = handle.read()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode("utf-8", "replace").strip()[:200]


def _ancestors(pid: int, table: dict[int, tuple[int, int, bool]]) -> set[int]:
    found: set[int] = set()
    while pid in table and pid not in found:
        found.add(pid)
        pid = table[pid][0]
    return found


def _with_descendants(roots: list[int], table: dict[int, tuple[int, int, bool]],
                      spared: set[int]) -> set[int]:
    """``roots`` and everything under them, not going into ``spared``."""
    children: dict[int, list[int]] = {}
    for pid, (parent, _, _) in table.items():
        children.setdefault(parent, []).append(pid)
    found: set[int] = set()
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid not in found and pid not in spared:
            found.add(pid)
            todo.extend(children.get(pid, []))
    return found


def stop_processes(targets: dict[int, int], grace: float) -> dict[int, int]:
    """Stop ``targets`` (pid -> start ticks; only while each is still that process):
    SIGTERM, then SIGKILL after ``grace`` seconds; those alive even then. A zombie (dead,
    its parent not done with it yet) counts as stopped."""
    _signal_all(targets, signal.SIGTERM)
    left = _wait(targets, grace)
    if left:
        _signal_all(left, signal.SIGKILL)
        left = _wait(left, 5.0)
    return left


def process_start(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot), or None when it does not run."""
    info = _stat(pid)
    return info[1] if info is not None and info[2] else None


def _same(pid: int, start: int) -> bool:
    """Whether ``pid`` is still the process that started at ``start`` (not a reused pid)."""
    info = _stat(pid)
    return info is not None and info[1] == start and info[2]


def _signal_all(targets: dict[int, int], signum: int) -> None:
    for pid, start in targets.items():
        if _same(pid, start):
            with contextlib.suppress(OSError):
                os.kill(pid, signum)


def _wait(targets: dict[int, int], seconds: float) -> dict[int, int]:
    """The targets still alive after at most ``seconds``."""
    deadline = time.monotonic() + seconds
    alive = dict(targets)
    while True:
        alive = {pid: start for pid, start in alive.items() if _same(pid, start)}
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.05)
