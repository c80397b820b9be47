"""Journal operations per second on SQLite and on PostgreSQL, and a Locust gate's
requests per second with one process, 1 worker and 2 workers.

1. Journal: N rounds of what a release writes most (start a release, begin and end a
   phase, record a gate result: 4 committed writes and 2 reads), on an SQLite file in
   /var/tmp (WAL, synchronous=FULL) and on a PostgreSQL started for the run on 127.0.70.1
   (tests/pg_cluster.py: fsync on, the server on this machine, over TCP loopback).
2. Locust: the load gate against HAProxy answering ``/health`` itself on 127.0.70.3
   (``http-request return``: the target costs little CPU), for 10 s each: ``workers: 0``
   (one process), 1, 2. The figures are what this machine (its cores) gives.

Run: .venv/bin/python bench/journal_ops.py [ROUNDS]   (default 300)
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from controller.adapters.locust import LoadRun, run_load  # noqa: E402
from controller.journal import Holder, Journal  # noqa: E402
from tests.http_target import LOCUSTFILE  # noqa: E402
from tests.pg_cluster import free_port, start_cluster  # noqa: E402

ADA = Holder("ada", "bench", 1, 1.0)


def journal_rounds(target: str | Path, rounds: int) -> float:
    """Operations per second over ``rounds`` release-shaped rounds (6 operations each)."""
    with Journal(target) as journal:
        began = time.monotonic()
        for index in range(rounds):
            rid = journal.start_release(name=f"b-{index}", version="1", service="b",
                                        environment="bench", manifest_path=Path("/m"),
                                        manifest_sha256="ab" * 32, operator=ADA)
            phase = journal.begin_phase(rid, "apply:batch1", {"hosts": ["h1"]})
            journal.end_phase(phase, "ok")
            journal.add_gate_result(rid, phase="candidate", kind="locust", verdict="pass",
                                    figures={"rps": 10.0})
        seconds = time.monotonic() - began
    return rounds * 6 / seconds


@contextmanager
def haproxy_target(address: str = "127.0.70.3") -> Iterator[str]:
    """HAProxy answering 200 to every request; stopped by its pid."""
    folder = Path(tempfile.mkdtemp(prefix="relctl-bench-"))
    port = free_port(address)
    (folder / "h.cfg").write_text(
        "global\n  maxconn 4096\ndefaults\n  mode http\n  timeout client 10s\n"
        "  timeout connect 5s\n  timeout server 10s\n"
        f"frontend f\n  bind {address}:{port}\n  http-request return status 200 "
        "content-type text/plain string ok\n")
    server = subprocess.Popen(["haproxy", "-db", "-f", str(folder / "h.cfg")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    try:
        yield f"http://{address}:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    folder = Path(tempfile.mkdtemp(prefix="relctl-bench-", dir="/var/tmp"))
    cluster = start_cluster()
    try:
        sqlite = journal_rounds(folder / "j.sqlite", rounds)
        postgres = journal_rounds(cluster.create_database(), rounds)
        print(f"journal ops/s ({rounds} rounds of 6): SQLite {sqlite:.0f}, "
              f"PostgreSQL {postgres:.0f}")
    finally:
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)
    if shutil.which("haproxy") is None:
        print("no haproxy: Locust figures skipped")
        return
    with haproxy_target() as url, tempfile.TemporaryDirectory() as out:
        for workers in (0, 1, 2):
            stats = run_load(LoadRun(LOCUSTFILE, url, 50, 50, 10, Path(out), f"w{workers}",
                                     workers=workers))
            print(f"locust workers={workers}: {stats.rps:7.0f} req/s, p95 {stats.p95_ms:.0f} ms,"
                  f" {stats.failures} failures of {stats.requests}")


if __name__ == "__main__":
    main()
