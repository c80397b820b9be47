"""Run Locust headless in a subprocess and read its CSV statistics.

Locust monkey-patches the standard library (gevent) when imported, so relctl never
imports it: it runs ``python -m locust`` and parses the ``*_stats.csv`` it writes.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from controller.adapters.ansible import PlaybookRun, failure_summary, run_playbook
from controller.adapters.children import (
    ChildRecorder,
    owned_child,
    run_owned,
    start_owned,
    stop_owned,
    wait_all,
)
from controller.errors import PrerequisiteError, RelctlError
from controller.models.gates import LoadStats, Samples
from controller.paths import bundled_playbook

SAMPLES_PLUGIN = Path(__file__).with_name("locust_samples.py")
SAMPLES_ENV = "RELCTL_LOCUST_SAMPLES"  # locust_samples.SAMPLES_ENV (it imports locust)
WORKERS_PLAYBOOK = "relctl_locust_workers.yml"
# After the master ends, how long its workers' playbook may take to see them quit (the
# master tells them to) before it is cut short.
WORKERS_GRACE_S = 20.0
LOOPBACK = "127.0.0.1"  # where the master of workers on the controller listens
# The master's log line for each worker that joined, with the worker's id (host_uuid).
READY = re.compile(r"(\S+) \(index \d+\) reported as ready\. ")


@dataclass(frozen=True)
class RemoteWorkers:
    """Locust workers on inventory hosts for one run, started over Ansible: each host
    gets the locustfile in a private temporary folder and runs ``per_host`` workers
    under ``timeout`` (a bound even if the controller is killed; they also quit when
    the master does, or a minute after it stops answering)."""

    hosts: list[str]
    per_host: int
    command: list[str]
    master_host: str
    connect_s: float
    inventory: Path
    ansible_cfg: Path
    runs_dir: Path

    @property
    def count(self) -> int:
        """Every worker process relctl starts."""
        return len(self.hosts) * self.per_host


@dataclass(frozen=True)
class LoadRun:
    """One headless Locust run."""

    locustfile: Path
    url: str
    users: int
    spawn_rate: float
    duration_s: float
    out_dir: Path
    label: str
    workers: int = 0  # N > 0: a master and N workers (Locust's distributed mode)
    children: ChildRecorder | None = field(default=None, compare=False)
    samples: bool = False  # every request's server, latency and outcome (read_samples)
    remote: RemoteWorkers | None = None  # the load comes from workers on these hosts


@dataclass
class BackgroundLoad:
    """A Locust started by ``start_load``, until ``stop_load``."""

    process: subprocess.Popen[bytes]
    scope: contextlib.ExitStack
    port: int  # its master's, when it has workers


def run_load(run: LoadRun) -> LoadStats:
    """Run Locust against ``run.url`` for ``run.duration_s`` seconds; return its figures."""
    _clear_samples(run)
    if run.remote is not None:
        return _stats(run, _run_with_remote_workers(run, run.remote))
    port = free_port(LOOPBACK) if run.workers else 0
    with _log(run).open("w") as out, \
            owned_child(run.children, f"locust:{run.label}", "locust") as child:
        code = run_owned(child, _command(run, port), env=_env(run),
                         timeout=run.duration_s + 60, stdout=out, stderr=subprocess.STDOUT)
    if code == 0 and run.workers:
        _only_ours(run, run.workers, LOOPBACK, port)
    return _stats(run, code)


def start_load(run: LoadRun) -> BackgroundLoad:
    """Start Locust in the background (for up to ``run.duration_s``); see ``stop_load``."""
    scope = contextlib.ExitStack()  # closed by stop_load: the child's journal row
    _clear_samples(run)
    try:
        port = free_port(LOOPBACK) if run.workers else 0
        child = scope.enter_context(owned_child(run.children, f"locust:{run.label}", "locust"))
        with _log(run).open("w") as out:
            process = start_owned(child, _command(run, port), env=_env(run), stdout=out,
                                  stderr=subprocess.STDOUT)
    except BaseException:
        scope.close()
        raise
    return BackgroundLoad(process, scope, port)


def stop_load(run: LoadRun, load: BackgroundLoad) -> LoadStats:
    """Stop a background Locust (SIGTERM: it writes its statistics) and read its figures."""
    with load.scope:
        code = stop_owned(load.process)
    # The launcher exits 128+15 when it stopped Locust with SIGTERM, as asked.
    code = 0 if code in (0, 128 + 15, -15) else code
    if code == 0 and run.workers:
        _only_ours(run, run.workers, LOOPBACK, load.port)
    return _stats(run, code)


def _command(run: LoadRun, port: int = 0) -> list[str]:
    """Locust's command line for ``run``; ``port``: its master's, with workers."""
    files = f"{run.locustfile},{SAMPLES_PLUGIN}" if run.samples else str(run.locustfile)
    return [
        sys.executable, "-m", "locust", "-f", files, "--headless",
        "--host", run.url, "-u", str(run.users), "-r", str(run.spawn_rate),
        "-t", f"{max(1, round(run.duration_s))}s", "--csv", str(run.out_dir / run.label),
        "--only-summary", "--stop-timeout", "5", "--exit-code-on-error", "0",
        *_distributed(run.workers, port),
    ]


def _run_with_remote_workers(run: LoadRun, remote: RemoteWorkers) -> int:
    """The master on the controller, bound to ``remote.master_host`` only, waiting for
    every worker; the workers' playbook runs while it does and ends when they quit. A
    worker host that fails (no Locust there, the master unreachable) stops the master
    and says why; a master that ends first cuts the playbook short after a grace."""
    port = free_port(remote.master_host)
    master = [*_command(run), "--master", "--master-bind-host", remote.master_host,
              "--master-bind-port", str(port),
              "--expect-workers", str(remote.count),
              "--expect-workers-max-wait", str(math.ceil(remote.connect_s))]
    # The workers' bound: the wait for all of them, the run, its stop and a margin.
    bound = math.ceil(remote.connect_s + run.duration_s + 60)
    extravars = {
        "relctl_locust_command": remote.command,
        "relctl_locustfile": str(run.locustfile),
        "relctl_locust_timeout_s": bound,
        "relctl_locust_options": ["--worker", "--master-host", remote.master_host,
                                  "--master-port", str(port),
                                  *(["--processes", str(remote.per_host)]
                                    if remote.per_host > 1 else [])],
    }
    with _log(run).open("w") as out, \
            owned_child(run.children, f"locust:{run.label}", "locust") as child:
        process = start_owned(child, master, env=_env(run), stdout=out,
                              stderr=subprocess.STDOUT)
        ended: list[float] = []

        def master_gone() -> bool:
            if process.poll() is None:
                return False
            ended[:] = ended or [time.monotonic()]
            return time.monotonic() - ended[0] > WORKERS_GRACE_S

        try:
            result = run_playbook(PlaybookRun(
                bundled_playbook(WORKERS_PLAYBOOK), remote.inventory, remote.ansible_cfg,
                remote.runs_dir, extravars=extravars, limit=",".join(remote.hosts),
                label=f"locust-workers-{run.label}", children=run.children,
                cancel=master_gone))
            if not result.succeeded and process.poll() is None:
                stop_owned(process)
                raise PrerequisiteError(
                    f"locust ({run.label}): the workers on {', '.join(remote.hosts)} did "
                    f"not run: {failure_summary(result)}",
                    hint="worker_hosts.command must run Locust on those hosts, and they "
                    f"must reach {remote.master_host}:{port} (worker_hosts.master_host)")
            code = wait_all([process], bound)[0]
        finally:
            if process.poll() is None:
                stop_owned(process)
    if code == 0:  # a failed run says why itself (its log's tail)
        _only_ours(run, remote.count, remote.master_host, port)
    return code


def _only_ours(run: LoadRun, expected: int, address: str, port: int) -> None:
    """Locust's master takes any worker that reaches it (it has no authentication): more
    workers than relctl started means someone else's joined, and their figures with them.
    The master waited for every worker relctl started (``--expect-workers``), so a run
    that ended well names at least that many; fewer means its log could not be read
    (another Locust's wording), and the run is not counted either: fail closed."""
    log = _log(run)
    joined = len(set(READY.findall(log.read_text(errors="replace"))))
    if joined > expected:
        raise RelctlError(
            f"locust ({run.label}): {joined} workers joined the master on {address}:{port}, "
            f"relctl started {expected}: the run is not counted",
            hint="give worker_hosts.master_host an address only the worker hosts reach"
            if run.remote is not None else "a process on the controller joined the master "
            "on loopback: run the gate where no one else can start Locust workers")
    if joined < expected:
        raise RelctlError(
            f"locust ({run.label}): the master's log ({log}) names {joined} ready workers, "
            f"relctl started {expected}: which workers joined cannot be checked, so the run "
            "is not counted",
            hint="relctl reads Locust 2's 'ID (index N) reported as ready.' lines: run the "
                 "Locust that relctl was installed with (pipx), or one that logs them")


def free_port(address: str) -> int:
    """A TCP port free on ``address`` now (the master binds it a moment later)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((address, 0))
        return int(probe.getsockname()[1])


def address_towards(host: str) -> str:
    """The controller's own address the kernel would use to reach ``host`` (a UDP
    socket's connect sends nothing); what workers there connect back to."""
    try:
        family, kind, proto, _name, where = socket.getaddrinfo(
            host, 22, type=socket.SOCK_DGRAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.connect(where)
            return str(probe.getsockname()[0])
    except OSError as error:
        raise RelctlError(f"cannot find the controller's address towards {host}: {error}",
                          hint="set gates.locust.worker_hosts.master_host") from error


def _distributed(workers: int, port: int) -> list[str]:
    """Locust's own master/worker mode: ``--processes N`` makes this process the master
    and forks N workers that connect to it; the master aggregates their statistics into
    the same ``*_stats.csv``. One command, one pid to stop: SIGTERM to the master stops
    its workers. The master listens on loopback, on a port of this run's own: Locust's
    default (every address, port 5557) would let anyone who reaches the controller join
    as a worker (the master has no authentication) and two runs share one master."""
    if workers <= 0:
        return []
    return ["--processes", str(workers), "--master-bind-host", LOOPBACK,
            "--master-bind-port", str(port), "--master-port", str(port)]


def _env(run: LoadRun) -> dict[str, str]:
    samples = {SAMPLES_ENV: str(samples_base(run))} if run.samples else {}
    return {**os.environ, "PYTHONWARNINGS": "ignore", **samples}


def _clear_samples(run: LoadRun) -> None:
    """A run's samples are its own: a dead controller's run of the same label (a resumed
    release runs it again) is not counted with them."""
    base = samples_base(run)
    for path in base.parent.glob(base.name + ".*"):
        path.unlink()


def samples_base(run: LoadRun) -> Path:
    """Where the plugin's processes write their samples (``BASE.PID`` each)."""
    return run.out_dir / f"{run.label}.samples"


def read_samples(run: LoadRun) -> dict[str, Samples]:
    """The run's requests per answering server (``""``: the answer named none, or there
    was no answer), merged from every Locust process's file."""
    found: dict[str, tuple[list[float], int]] = {}
    base = samples_base(run)
    for path in sorted(base.parent.glob(base.name + ".*")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.rsplit(",", 2)
            if len(parts) != 3:
                continue
            try:
                latency, ok = float(parts[1]), parts[2] == "1"
            except ValueError:
                continue
            latencies, failures = found.setdefault(parts[0], ([], 0))
            if ok:
                latencies.append(latency)
            else:
                found[parts[0]] = (latencies, failures + 1)
    return {server: Samples(latencies, failures) for server, (latencies, failures)
            in found.items()}


def _log(run: LoadRun) -> Path:
    run.out_dir.mkdir(parents=True, exist_ok=True)
    return (run.out_dir / run.label).with_suffix(".log")


def _stats(run: LoadRun, returncode: int) -> LoadStats:
    stats = run.out_dir / f"{run.label}_stats.csv"
    if returncode != 0 or not stats.exists():
        tail = _log(run).read_text(errors="replace")[-600:]
        raise RelctlError(f"locust ({run.label}) did not run: exit {returncode}: {tail}")
    return parse_stats(stats)


def parse_stats(path: Path) -> LoadStats:
    """The 'Aggregated' row of a Locust ``*_stats.csv``, and its rows per HTTP method."""
    with path.open() as handle:
        every = list(csv.DictReader(handle))
    rows = [row for row in every if row.get("Name") == "Aggregated"]
    if not rows:
        return LoadStats(0, 0, 0.0, 0.0, 0.0, 0.0)
    by_method: dict[str, tuple[int, int]] = {}
    for line in every:
        method = (line.get("Type") or "").upper()
        if line.get("Name") != "Aggregated" and method:
            requests, failures = by_method.get(method, (0, 0))
            by_method[method] = (requests + int(line["Request Count"]),
                                 failures + int(line["Failure Count"]))
    row = rows[0]
    return LoadStats(
        requests=int(row["Request Count"]),
        failures=int(row["Failure Count"]),
        p50_ms=_number(row["50%"]),
        p95_ms=_number(row["95%"]),
        p99_ms=_number(row["99%"]),
        rps=_number(row["Requests/s"]),
        by_method=by_method,
    )


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0
