"""``ledgerctl {start|stop|restart|status|run}``: service control without systemd.

``start`` daemonizes the server (double fork + setsid, stdio to the log file),
writes the pidfile and waits until ``/health`` answers 200.  ``run`` serves in
the foreground (for systemd).  Exit codes follow LSB: ``status`` gives 0 when
running and healthy, 1 when running but unhealthy, 3 when stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from collections import deque
from pathlib import Path

from . import config, server
from .version import RELEASE_ROOT, VERSION

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_STOPPED = 3
POLL = 0.1


def read_pid(pidfile: Path) -> int | None:
    """PID recorded in ``pidfile``, or None."""
    try:
        return int(pidfile.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None


def is_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def is_ledger(pid: int) -> bool:
    """True if ``pid`` runs a ledger server (guards against PID reuse)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return False
    except OSError:
        return True
    return b"ledger.server" in cmdline


def running_pid(cfg: config.Config) -> int | None:
    """PID of the running server according to the pidfile, else None."""
    pid = read_pid(cfg.pidfile)
    if pid is None or not is_alive(pid) or not is_ledger(pid):
        return None
    return pid


def health(cfg: config.Config, timeout: float = 2.0) -> dict[str, object] | None:
    """The /health document if the server answers 200 with status ok."""
    url = f"http://{cfg.probe_host}:{cfg.port}/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            if resp.status != 200:
                return None
            doc = json.loads(resp.read())
    except (OSError, ValueError, urllib.error.URLError):
        return None
    return doc if isinstance(doc, dict) and doc.get("status") == "ok" else None


def log_tail(cfg: config.Config, lines: int = 20) -> str:
    """Last lines of the log file."""
    try:
        with open(cfg.log, encoding="utf-8", errors="replace") as handle:
            return "".join(deque(handle, maxlen=lines))
    except OSError as exc:
        return f"(cannot read {cfg.log}: {exc})\n"


def write_pidfile(pidfile: Path, pid: int) -> None:
    """Atomically write ``pid`` to ``pidfile``."""
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    tmp = pidfile.with_name(f".{pidfile.name}.{os.getpid()}")
    tmp.write_text(f"{pid}\n", encoding="ascii")
    os.replace(tmp, pidfile)


def remove_pidfile(pidfile: Path) -> None:
    """Delete ``pidfile`` if present."""
    with contextlib.suppress(FileNotFoundError):
        pidfile.unlink()


def exec_server(cfg: config.Config) -> None:
    """In the daemon: point stdio at the log file and exec the server."""
    devnull = os.open(os.devnull, os.O_RDONLY)
    logfd = os.open(cfg.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    os.dup2(devnull, 0)
    os.dup2(logfd, 1)
    os.dup2(logfd, 2)
    os.chdir("/")
    os.umask(0o022)
    env = {**os.environ, "PYTHONPATH": str(RELEASE_ROOT)}
    argv = [sys.executable, "-s", "-m", "ledger.server", "--config", str(cfg.path.resolve())]
    os.execve(sys.executable, argv, env)


def spawn(cfg: config.Config) -> int:
    """Double-fork a detached server process and return its PID."""
    cfg.log.parent.mkdir(parents=True, exist_ok=True)
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.close(read_end)
            os.setsid()
            daemon = os.fork()
            if daemon:
                os.write(write_end, str(daemon).encode("ascii"))
                os._exit(0)
            os.close(write_end)
            exec_server(cfg)
        finally:
            os._exit(127)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    os.waitpid(child, 0)
    if not data:
        raise RuntimeError("failed to fork the server process")
    return int(data)


def wait_healthy(cfg: config.Config, pid: int, timeout: float) -> bool:
    """Poll /health until 200, the process dies, or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_alive(pid):
            return False
        if health(cfg, timeout=1.0):
            return True
        time.sleep(POLL)
    return False


def terminate(pid: int, timeout: float) -> bool:
    """SIGTERM ``pid``, wait, SIGKILL after ``timeout``. True if it was killed."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_alive(pid):
            return False
        time.sleep(POLL)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + 5
    while is_alive(pid) and time.monotonic() < deadline:
        time.sleep(POLL)
    return True


def start(cfg: config.Config, timeout: float) -> int:
    """Start the server unless it runs already; wait for it to be healthy."""
    pid = running_pid(cfg)
    if pid is not None:
        if wait_healthy(cfg, pid, timeout):
            print(f"ledger already running (pid {pid})")
            return EXIT_OK
        print(f"ledger running (pid {pid}) but not healthy", file=sys.stderr)
        return EXIT_FAILED
    remove_pidfile(cfg.pidfile)
    pid = spawn(cfg)
    write_pidfile(cfg.pidfile, pid)
    if wait_healthy(cfg, pid, timeout):
        print(f"ledger {VERSION} started (pid {pid}) on {cfg.bind}:{cfg.port}")
        return EXIT_OK
    reason = "exited" if not is_alive(pid) else f"not healthy after {timeout:g}s"
    if is_alive(pid):
        terminate(pid, timeout=5)
    remove_pidfile(cfg.pidfile)
    print(f"ledger {VERSION} failed to start ({reason}); log tail of {cfg.log}:", file=sys.stderr)
    print(log_tail(cfg), end="", file=sys.stderr)
    return EXIT_FAILED


def stop(cfg: config.Config, timeout: float) -> int:
    """Stop the server (SIGTERM, then SIGKILL) and remove the pidfile."""
    pid = running_pid(cfg)
    if pid is None:
        remove_pidfile(cfg.pidfile)
        print("ledger not running")
        return EXIT_OK
    killed = terminate(pid, timeout)
    remove_pidfile(cfg.pidfile)
    print(f"ledger stopped (pid {pid}{', killed' if killed else ''})")
    return EXIT_OK


def status(cfg: config.Config) -> int:
    """Report state: 0 running and healthy, 1 unhealthy, 3 stopped."""
    pid = running_pid(cfg)
    if pid is None:
        print("ledger stopped")
        return EXIT_STOPPED
    doc = health(cfg)
    if doc is None:
        print(f"ledger running (pid {pid}) but unhealthy")
        return EXIT_FAILED
    print(f"ledger {doc.get('version')} running (pid {pid}, schema {doc.get('schema')})")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="ledgerctl", description=__doc__)
    parser.add_argument("command", choices=["start", "stop", "restart", "status", "run"])
    parser.add_argument("--config", default=config.DEFAULT_CONFIG)
    parser.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        help="seconds to wait for health / for the stop (default 10)",
    )
    args = parser.parse_args(argv)
    if args.command == "run":
        return server.main(["--config", args.config])
    try:
        cfg = config.load(args.config)
    except config.ConfigError as exc:
        print(f"ledgerctl: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.command == "start":
        return start(cfg, args.timeout)
    if args.command == "stop":
        return stop(cfg, args.timeout)
    if args.command == "restart":
        stop(cfg, args.timeout)
        return start(cfg, args.timeout)
    return status(cfg)
