"""``relctl serve`` with a big journal: first byte of the team view and of a release page,
how soon an open page learns of a phase change, and the server's memory when idle.

1. A journal of N releases (default 10,000: two services, two environments, each release
   with 6 phases, 3 hosts, 2 gate results and 3 events) written into SQLite in one
   transaction, then copied to a PostgreSQL started for the run on 127.0.71.1 with
   ``relctl journal migrate``; one release in flight on top, through the journal's API.
2. For each journal, ``relctl serve`` on 127.0.0.1: the time to the first byte of ``/``
   and of ``/releases/NAME`` (median and max of 20, after 3 warm-ups); then, with a page's
   event stream open, a phase begun through the journal's API and the time until the
   stream says ``change`` plus the page's fetch of its live part (median and max of 10);
   then the server's RSS after 2 s idle.

Goals (issue 28): team view ≤ 100 ms, release page ≤ 200 ms, a phase change on an open
page ≤ 1 s, idle RSS ≤ 80 MiB. The anchor is the SQLite journal: PostgreSQL's figures
are also printed as a ratio of it.

Run: .venv/bin/python bench/serve.py [N]   (default 10000)
"""

from __future__ import annotations

import http.client
import json
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from controller.journal import Holder, Journal  # noqa: E402
from tests.pg_cluster import free_port, start_cluster  # noqa: E402

RELCTL = str(ROOT / ".venv" / "bin" / "relctl")
ADDRESS = "127.0.0.1"
PG_ADDRESS = "127.0.71.1"
ADA = Holder("ada", "bench", 1, 1.0)
PHASES = ("baseline", "snapshot", "apply:canary", "gate:testinfra:canary", "apply:batch2",
          "gate:testinfra:batch2")
GOALS = {"team view first byte": 100.0, "release page first byte": 200.0,
         "phase change on an open page": 1000.0}
RSS_GOAL_MIB = 80.0


def fill(path: Path, count: int) -> None:
    """``count`` released releases written straight into a new SQLite journal."""
    Journal(path).close()  # the schema
    db = sqlite3.connect(path)
    stamp = "2026-11-01T22:00:00.000000+00:00"
    with db:
        for index in range(1, count + 1):
            service, env = ("billing", "payments")[index % 2], ("staging", "prod")[index % 3 == 0]
            version = f"1.{index // 100}.{index % 100}"
            db.execute(
                "INSERT INTO releases (id, name, version, service, environment, manifest_path,"
                " manifest_sha256, state, started, ended, operator_user, operator_host,"
                " operator_pid, operator_started, exit_code, message) VALUES"
                " (?, ?, ?, ?, ?, '/m.yml', ?, 'released', ?, ?, 'ada', 'bench', 1, 1.0, 0,"
                " 'released')",
                (index, f"{service}-{version}", version, service, env, "ab" * 32, stamp, stamp))
            db.executemany(
                "INSERT INTO phases (release_id, name, state, started, ended, seconds, detail)"
                " VALUES (?, ?, 'ok', ?, ?, 1.5, ?)",
                [(index, name, stamp, stamp, json.dumps({"hosts": ["web-1", "web-2"]}))
                 for name in PHASES])
            db.executemany(
                "INSERT INTO host_states (release_id, host, state, version_before,"
                " version_after, updated) VALUES (?, ?, 'verified', '1.0.0', ?, ?)",
                [(index, f"web-{h}", version, stamp) for h in (1, 2, 3)])
            db.executemany(
                "INSERT INTO gate_results (release_id, phase, kind, verdict, figures, created)"
                " VALUES (?, ?, ?, 'pass', ?, ?)",
                [(index, "canary", "testinfra", json.dumps({"tests": 12, "failures": 0}), stamp),
                 (index, "candidate", "locust", json.dumps(
                     {"candidate": {"p50_ms": 4, "p95_ms": 9, "p99_ms": 14, "rps": 80}}),
                  stamp)])
            db.executemany("INSERT INTO events (release_id, time, message) VALUES (?, ?, ?)",
                           [(index, stamp, f"event {n}") for n in range(3)])
    db.close()


def in_flight(target: str) -> int:
    """One release applying now, through the journal's API."""
    with Journal(target) as journal:
        release_id = journal.start_release(
            name="billing-9.9.9", version="9.9.9", service="billing", environment="staging",
            manifest_path=Path("/m.yml"), manifest_sha256="cd" * 32, operator=ADA,
            state="applying")
        journal.set_host_state(release_id, "web-1", "applying")
        journal.begin_phase(release_id, "apply:canary", {"hosts": ["web-1"]})
    return release_id


def first_byte(port: int, path: str, headers: dict[str, str] | None = None) -> float:
    """Milliseconds from sending ``GET path`` to its first byte (the whole body read)."""
    connection = http.client.HTTPConnection(ADDRESS, port, timeout=30)
    try:
        began = time.monotonic()
        connection.request("GET", path, headers=headers or {})
        answer = connection.getresponse()
        answer.read(1)
        took = (time.monotonic() - began) * 1000
        answer.read()
        if answer.status != 200:
            raise SystemExit(f"GET {path}: HTTP {answer.status}")
        return took
    finally:
        connection.close()


def timed(fn: Callable[[], float], runs: int, warm: int = 3) -> tuple[float, float]:
    for _ in range(warm):
        fn()
    samples = [fn() for _ in range(runs)]
    return statistics.median(samples), max(samples)


def change_seen(port: int, target: str, release_id: int, rounds: int) -> tuple[float, float]:
    """Milliseconds from a phase begun in the journal until an open page's event stream
    says ``change`` and the page has fetched its live part again."""
    stream = http.client.HTTPConnection(ADDRESS, port, timeout=30)
    stream.request("GET", "/events")
    events = stream.getresponse()
    events.fp.readline()  # retry:
    events.fp.readline()
    samples = []
    with Journal(target) as journal:
        for round_ in range(rounds):
            time.sleep(0.6)  # the poller has read the mark as it is
            began = time.monotonic()
            journal.begin_phase(release_id, f"gate:testinfra:r{round_}", {"hosts": ["web-1"]})
            while not events.fp.readline().startswith(b"event: change"):
                pass
            first_byte(port, "/", {"X-Fragment": "1"})
            samples.append((time.monotonic() - began) * 1000)
    stream.close()
    return statistics.median(samples), max(samples)


def measure(label: str, target: str, name: str, release_id: int,
            state_dir: Path) -> dict[str, float]:
    port = free_port(ADDRESS)
    server = subprocess.Popen([RELCTL, "--journal", target, "--state-dir", str(state_dir),
                               "serve", "--port", str(port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                first_byte(port, "/status/billing.json")
            except (OSError, SystemExit):
                if server.poll() is not None or time.monotonic() > deadline:
                    server.kill()
                    raise SystemExit(f"{label}: relctl serve did not start: "
                                     f"{server.communicate()[1][-2000:]}") from None
                time.sleep(0.2)
                continue
            break
        figures = {
            "team view first byte": timed(lambda: first_byte(port, "/"), 20),
            "release page first byte": timed(lambda: first_byte(port, f"/releases/{name}"),
                                             20),
            "phase change on an open page": change_seen(port, target, release_id, 10),
        }
        time.sleep(2)
        rss = psutil.Process(server.pid).memory_info().rss / 2**20
    finally:
        server.terminate()
        server.wait(timeout=20)
    result = {}
    for what, (median, worst) in figures.items():
        result[what] = median
        goal = GOALS[what]
        print(f"{label:10} {what:29} median {median:7.1f} ms  max {worst:7.1f} ms  "
              f"goal {goal:.0f} ms: {'met' if median <= goal else 'MISSED'}")
    result["rss"] = rss
    print(f"{label:10} {'idle RSS':29} {rss:7.1f} MiB  goal {RSS_GOAL_MIB:.0f} MiB: "
          f"{'met' if rss <= RSS_GOAL_MIB else 'MISSED'}")
    return result


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    folder = Path(tempfile.mkdtemp(prefix="relctl-bench-serve-", dir="/var/tmp"))
    cluster = start_cluster(PG_ADDRESS)
    try:
        began = time.monotonic()
        path = folder / "journal.sqlite"
        fill(path, count)
        with Journal(path) as journal:
            name = journal.release(max(count // 2, 1)).name
        url = cluster.create_database()
        copied = subprocess.run([RELCTL, "journal", "migrate", "--from", str(path), "--to",
                                 url], capture_output=True, text=True, check=False)
        if copied.returncode != 0:
            raise SystemExit(f"journal migrate failed: {copied.stderr}")
        print(f"{count} releases in SQLite and PostgreSQL in {time.monotonic() - began:.0f} s;"
              f" release page of {name}")
        anchor = measure("sqlite", str(path), name, in_flight(str(path)), folder / "s1")
        other = measure("postgresql", url, name, in_flight(url), folder / "s2")
        for what, value in other.items():
            print(f"postgresql/sqlite {what:29} x{value / anchor[what]:.2f}")
    finally:
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
