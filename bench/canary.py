"""Canary analysis under a loaded machine: false rollbacks of a good release, and how
often a slow one is caught on the canary step before batch 2.

A lab of 3 primaries (ledger active/active, HAProxy round-robin, $RELCTL_BENCH_BASE,
default 127.0.95.10) on 1.0.0, and "something else" loading it the whole time: a
background Locust through the load balancer. Then RUNS rounds of:

    good   ledger 1.1.0 with strategy.analysis (one step, a third of the traffic, 6 s):
           released (exit 0) or a false rollback; then 1.0.0 deployed back
    slow   ledger 2.0.0 (every response 350,000 PBKDF2 rounds slower) with the same
           analysis: caught when the canary step fails and batch 2 was never applied

Goals (issue 27): 0 false rollbacks, the slow release caught RUNS of RUNS times. The
anchor is the good release's own canary step: its median latency shift is printed beside
the slow one's (a ratio to a shift near 0 ms would mean nothing).

Run: .venv/bin/python bench/canary.py [RUNS]   (default 10; about 2.5 min a round on a
2-core machine: give it 30 min, and stop it with Ctrl-C, which brings its lab down)
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _lab import LEDGER, ROOT, deploy_ledger, fresh_state_dir, relctl

from controller.adapters.locust import LoadRun, start_load, stop_load
from controller.journal import Journal

sys.path.insert(0, str(ROOT))
from tests.http_target import LOCUSTFILE
from tests.integration.test_canary import manifest  # the module's own manifests

BASE = os.environ.get("RELCTL_BENCH_BASE", "127.0.95.10")
RELCTL = [sys.executable, "-m", "controller"]


def apply(state: Path, path: Path) -> tuple[int, float]:
    began = time.monotonic()
    done = subprocess.run([*RELCTL, "--state-dir", str(state), "apply", str(path), "--yes",
                           "--json"], capture_output=True, text=True, check=False, cwd=ROOT)
    return done.returncode, time.monotonic() - began


def canary_step(state: Path, release: str) -> tuple[str, float | None, set[str]]:
    """The first canary step's verdict and median shift, and the hosts batch 2 touched."""
    with Journal(state / "journal.sqlite") as journal:
        record = journal.find_release(release)
        assert record is not None
        steps = [g for g in journal.gate_results(record.id) if g.phase.startswith("canary:")]
        touched = {h.host for h in journal.host_states(record.id)
                   if h.host != "primary-1" and h.state in ("applying", "applied", "verified",
                                                            "restored", "failed")}
    if not steps:
        return "none", None, touched
    shift = (steps[0].figures.get("latency") or {}).get("median_shift_ms")
    return steps[0].verdict, shift, touched


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    state = fresh_state_dir("canary")
    folder = Path(tempfile.mkdtemp(prefix="relctl-bench-canary-"))
    lab = relctl(state, "lab", "up", "--primary", "3", "--backup", "0", "--base-address",
                 BASE, *LEDGER, "--round-robin", "ledger")
    background = None
    results: dict[str, list[Any]] = {"good": [], "slow": []}
    try:
        deploy_ledger(state, "1.0.0")
        load = LoadRun(LOCUSTFILE, str(lab["url"]), 4, 4, 3600, folder, "background")
        background = start_load(load)  # something else loads the service all along
        for index in range(1, runs + 1):
            name = f"bench-good-{index}"
            code, seconds = apply(state, manifest(folder, name, "1.1.0"))
            verdict, shift, _ = canary_step(state, name)
            results["good"].append((code, verdict, shift, seconds))
            deploy_ledger(state, "1.0.0")
            name = f"bench-slow-{index}"
            code, seconds = apply(state, manifest(folder, name, "2.0.0"))
            verdict, shift, touched = canary_step(state, name)
            results["slow"].append((code, verdict, shift, seconds, sorted(touched)))
            print(f"round {index}: good exit {results['good'][-1][0]} "
                  f"({results['good'][-1][1]}), slow exit {code} ({verdict}, batch 2 "
                  f"touched: {sorted(touched) or 'no'})", flush=True)
    finally:
        if background is not None:
            stop_load(load, background)
        relctl(state, "lab", "down")
    good, slow = results["good"], results["slow"]
    false_rollbacks = sum(1 for code, *_ in good if code != 0)
    caught = sum(1 for code, verdict, _s, _t, touched in slow
                 if code == 3 and verdict == "fail" and not touched)
    good_shift = statistics.median([s for *_, s, _t in good if s is not None] or [0.0])
    slow_shift = statistics.median([s for _c, _v, s, _t, _h in slow if s is not None] or [0.0])
    print(json.dumps({"runs": runs, "false_rollbacks": false_rollbacks,
                      "slow_caught_on_canary": caught}))
    print(f"good release: {false_rollbacks} false rollbacks of {runs} (goal 0); median "
          f"canary shift {good_shift:.1f} ms; apply {statistics.median(t for *_, t in good):.1f} s")
    print(f"slow release: caught on the canary step, batch 2 untouched, {caught} of {runs} "
          f"(goal {runs}); median canary shift {slow_shift:.1f} ms, against the good "
          f"release's {good_shift:.1f} ms (the anchor)")


if __name__ == "__main__":
    main()
