"""Run Locust headless in a subprocess and read its CSV statistics.

Locust monkey-patches the standard library (gevent) when imported, so relctl never
imports it: it runs ``python -m locust`` and parses the ``*_stats.csv`` it writes.
"""

from __future__ import annotations

import contextlib
import csv
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from controller.adapters.children import (
    ChildRecorder,
    owned_child,
    run_owned,
    start_owned,
    stop_owned,
)
from controller.errors import RelctlError
from controller.models.gates import LoadStats, Samples

SAMPLES_PLUGIN = Path(__file__).with_name("locust_samples.py")
SAMPLES_ENV = "RELCTL_LOCUST_SAMPLES"  # locust_samples.SAMPLES_ENV (it imports locust)


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


@dataclass
class BackgroundLoad:
    """A Locust started by ``start_load``, until ``stop_load``."""

    process: subprocess.Popen[bytes]
    scope: contextlib.ExitStack


def run_load(run: LoadRun) -> LoadStats:
    """Run Locust against ``run.url`` for ``run.duration_s`` seconds; return its figures."""
    _clear_samples(run)
    with _log(run).open("w") as out, \
            owned_child(run.children, f"locust:{run.label}", "locust") as child:
        code = run_owned(child, _command(run), env=_env(run), timeout=run.duration_s + 60,
                         stdout=out, stderr=subprocess.STDOUT)
    return _stats(run, code)


def start_load(run: LoadRun) -> BackgroundLoad:
    """Start Locust in the background (for up to ``run.duration_s``); see ``stop_load``."""
    scope = contextlib.ExitStack()  # closed by stop_load: the child's journal row
    _clear_samples(run)
    try:
        child = scope.enter_context(owned_child(run.children, f"locust:{run.label}", "locust"))
        with _log(run).open("w") as out:
            process = start_owned(child, _command(run), env=_env(run), stdout=out,
                                  stderr=subprocess.STDOUT)
    except BaseException:
        scope.close()
        raise
    return BackgroundLoad(process, scope)


def stop_load(run: LoadRun, load: BackgroundLoad) -> LoadStats:
    """Stop a background Locust (SIGTERM: it writes its statistics) and read its figures."""
    with load.scope:
        code = stop_owned(load.process)
    # The launcher exits 128+15 when it stopped Locust with SIGTERM, as asked.
    return _stats(run, 0 if code in (0, 128 + 15, -15) else code)


def _command(run: LoadRun) -> list[str]:
    files = f"{run.locustfile},{SAMPLES_PLUGIN}" if run.samples else str(run.locustfile)
    return [
        sys.executable, "-m", "locust", "-f", files, "--headless",
        "--host", run.url, "-u", str(run.users), "-r", str(run.spawn_rate),
        "-t", f"{max(1, round(run.duration_s))}s", "--csv", str(run.out_dir / run.label),
        "--only-summary", "--stop-timeout", "5", "--exit-code-on-error", "0",
        *_distributed(run.workers),
    ]


def _distributed(workers: int) -> list[str]:
    """Locust's own master/worker mode: ``--processes N`` makes this process the master
    and forks N workers that connect to it over loopback; the master aggregates their
    statistics into the same ``*_stats.csv``. One command, one pid to stop: SIGTERM to
    the master stops its workers."""
    return ["--processes", str(workers)] if workers > 0 else []


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
