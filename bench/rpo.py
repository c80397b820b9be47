"""RPO per replication method: site-loss drills under load (Locust through the LB), the
same lab, the same run, one plan per method; the anchor is relctl's own copy.

    copy        examples/continuity/ledger-lab.yml: relctl replicate copies (the drill
                takes one at its start; `every: 1m` between drills)
    litestream  examples/continuity/ledger-litestream.yml: Litestream streams the WAL
                to the lab's shared storage every second
    postgresql  examples/continuity/ledger-postgresql.yml on a second lab (ledger in
                PostgreSQL mode, $RELCTL_BENCH_PG_BASE, default 127.0.67.x): a streaming
                standby on backup-1 and backup-2, one promoted at failover (RTO includes
                the promote), the other re-pointed at it

RPO is the age, at the fault, of the newest data the failover restored (copy: the copy's
time; Litestream: the newest replicated transaction's). Each drill restores the lab
(failback) itself. Prints median, min and max of RUNS drills per method, RTO too, and
the ratio of each median RPO to the anchor's.

Run: RELCTL_BENCH_BASE=127.0.66.10 .venv/bin/python bench/rpo.py [RUNS]   (default 5)
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
from pathlib import Path

from _lab import ROOT
from failover_rto import drill, fresh_state, lab_down, run_relctl, say, start_lab

sys.path.insert(0, str(ROOT))
from tests.integration.pg_site import build_site

PG_STATE = Path("/var/tmp/relctl-bench-rpo-pg")
PG_BASE = os.environ.get("RELCTL_BENCH_PG_BASE", "127.0.67.")  # loopback: 127.0.67.10-14

PLANS = {"copy": "examples/continuity/ledger-lab.yml",
         "litestream": "examples/continuity/ledger-litestream.yml"}


def main(runs: int) -> None:
    fresh_state()
    figures: dict[str, dict[str, list[float]]] = {}
    try:
        start_lab()
        for method, plan in PLANS.items():
            results = [drill(run, "site-loss", plan) for run in range(1, runs + 1)]
            figures[method] = {key: [float(r[key]) for r in results if r.get(key) is not None]
                               for key in ("rpo_s", "rto_s")}
            say(f"{method}: rpo {figures[method]['rpo_s']}")
    finally:
        lab_down()
    try:
        figures["postgresql"] = postgresql(runs)
    except (SystemExit, RuntimeError) as error:  # the SQLite figures still print
        print(f"WARNING: the PostgreSQL drills failed: {error}", file=sys.stderr)
    anchor = statistics.median(figures["copy"]["rpo_s"])
    print(f"RPO and RTO of site-loss drills, median of {runs} (min-max), same lab and run")
    for method, values in figures.items():
        rpo, rto = values["rpo_s"], values["rto_s"]
        print(f"{method:11} rpo {statistics.median(rpo):7.3f} s ({min(rpo):.3f}-{max(rpo):.3f})"
              f"  x{statistics.median(rpo) / anchor:.3f} of copy   rto "
              f"{statistics.median(rto):.3f} s ({min(rto):.3f}-{max(rto):.3f})")


def postgresql(runs: int) -> dict[str, list[float]]:
    """RUNS site-loss drills on a PostgreSQL site (each fails back: the old primary
    rebuilt from the promoted standby, switched back, both backups standbys again)."""
    state, folder = PG_STATE / "state", PG_STATE / "site"
    shutil.rmtree(PG_STATE, ignore_errors=True)
    folder.mkdir(parents=True)
    try:
        say(f"PostgreSQL site at {PG_BASE}10: lab up --postgresql, standbys on backup-1 "
            "and backup-2")
        plan = str(build_site(state, folder, PG_BASE, backups=2).plan)
        results = [drill(run, "site-loss", plan, state) for run in range(1, runs + 1)]
    finally:
        down = run_relctl("lab", "down", state=state)
        if down.returncode != 0:
            print(f"WARNING: lab down failed:\n{down.stderr}", file=sys.stderr)
    values = {key: [float(r[key]) for r in results if r.get(key) is not None]
              for key in ("rpo_s", "rto_s")}
    say(f"postgresql: rpo {values['rpo_s']}")
    return values


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
