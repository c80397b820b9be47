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


def run_load(run: LoadRun) -> LoadStats:
    """Run Locust against ``run.url`` for ``run.duration_s`` seconds; return its figures."""
    run.out_dir.mkdir(parents=True, exist_ok=True)
    prefix = run.out_dir / run.label
    command = [
        sys.executable, "-m", "locust", "-f", str(run.locustfile), "--headless",
        "--host", run.url, "-u", str(run.users), "-r", str(run.spawn_rate),
        "-t", f"{max(1, round(run.duration_s))}s", "--csv", str(prefix), "--only-summary",
        "--stop-timeout", "5", "--exit-code-on-error", "0",
    ]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    log = prefix.with_suffix(".log")
    with log.open("w") as out:
        result = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env,
                                timeout=run.duration_s + 60, check=False)
    stats = Path(f"{prefix}_stats.csv")
    if result.returncode != 0 or not stats.exists():
        tail = log.read_text(errors="replace")[-600:]
        raise RelctlError(f"locust ({run.label}) did not run: exit {result.returncode}: {tail}")
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
