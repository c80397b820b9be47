"""Run Locust headless in a subprocess and read its CSV statistics.

Locust monkey-patches the standard library (gevent) when imported, so relctl never
imports it: it runs ``python -m locust`` and parses the ``*_stats.csv`` it writes.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from controller.errors import RelctlError
from controller.models.gates import LoadStats


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


def run_load(run: LoadRun) -> LoadStats:
    """Run Locust against ``run.url`` for ``run.duration_s`` seconds; return its figures."""
    with _log(run).open("w") as out:
        result = subprocess.run(_command(run), stdout=out, stderr=subprocess.STDOUT, env=_env(),
                                timeout=run.duration_s + 60, check=False)
    return _stats(run, result.returncode)


def start_load(run: LoadRun) -> subprocess.Popen[bytes]:
    """Start Locust in the background (for up to ``run.duration_s``); see ``stop_load``."""
    with _log(run).open("w") as out:
        return subprocess.Popen(_command(run), stdout=out, stderr=subprocess.STDOUT, env=_env())


def stop_load(run: LoadRun, process: subprocess.Popen[bytes]) -> LoadStats:
    """Stop a background Locust (SIGTERM: it writes its statistics) and read its figures."""
    if process.poll() is None:
        process.terminate()
    try:
        code = process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        code = process.wait()
    return _stats(run, 0 if code in (0, -15) else code)


def _command(run: LoadRun) -> list[str]:
    return [
        sys.executable, "-m", "locust", "-f", str(run.locustfile), "--headless",
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


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONWARNINGS": "ignore"}


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
    """The 'Aggregated' row of a Locust ``*_stats.csv``."""
    with path.open() as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("Name") == "Aggregated"]
    if not rows:
        return LoadStats(0, 0, 0.0, 0.0, 0.0, 0.0)
    row = rows[0]
    return LoadStats(
        requests=int(row["Request Count"]),
        failures=int(row["Failure Count"]),
        p50_ms=_number(row["50%"]),
        p95_ms=_number(row["95%"]),
        p99_ms=_number(row["99%"]),
        rps=_number(row["Requests/s"]),
    )


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0
