"""Failover RTO on a lab of 2 primaries + 1 backup: relctl's site-loss drill versus
HAProxy's own health-check failover (``inter 2s fall 3 rise 2``), against the goals.

1. Lab at 127.0.60.10 (or $RELCTL_BENCH_BASE); ledger 1.0.0 on the primaries, ``relctl
   replicate`` then ``relctl apply`` of 1.1.0 (the journal's last good release): the
   backup site, never deployed by hand, follows the release (a warm standby).
2. ``relctl drill site-loss``, then ``host-loss``, RUNS times each (each drill restores the
   lab itself); the median, min and max of its measures: detection, preflight, switch,
   verify, RTO (fault -> every critical function verified through the LB), RPO, failed
   requests split idempotent / not (goals: 0 idempotent, <= 0.5 % overall); then
   ``relctl drill test-failover`` RUNS times: the would-be RTO.
3. RUNS times: every primary host's sshd (PID 1 of the host) killed, and nothing else
   done: seconds until ``GET /health`` through the LB answers 200 again (polled every
   50 ms). The primaries are then restarted, redeployed, and served from again.
4. Both against the goals: switch <= 1 s, fault to restored service <= 3 s.

Run: .venv/bin/python bench/failover_rto.py [RUNS]   (default 5)
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil
from _lab import LEDGER, RELCTL, ROOT, deploy_ledger, relctl

STATE = Path("/var/tmp/relctl-bench-failover")
BASE = os.environ.get("RELCTL_BENCH_BASE", "127.0.60.10")  # a loopback address
LB_URL = f"http://{BASE}:8000"
PLAN = "examples/continuity/ledger-lab.yml"
MEASURES = ("detection_s", "preflight_s", "switch_s", "verify_s", "rto_s",
            "rto_from_detection_s", "rpo_s", "load_failures", "load_requests",
            "load_failures_idempotent", "load_requests_idempotent",
            "load_failures_non_idempotent", "load_requests_non_idempotent", "outage_s")
COUNTS = ("load_failures", "load_requests", "failed_polls", "load_failures_idempotent",
          "load_requests_idempotent", "load_failures_non_idempotent",
          "load_requests_non_idempotent")
GOAL_IDEMPOTENT_FAILURES, GOAL_FAILURE_RATIO = 0, 0.005
GOAL_SWITCH_S, GOAL_RESTORED_S = 1.0, 3.0
POLL_S, WAIT_S = 0.05, 60.0
# Straight to the lab: a proxy named in the environment must never see this traffic.
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def say(message: str) -> None:
    """Progress on stderr; the figures alone go to stdout."""
    print(f"· {message}", file=sys.stderr, flush=True)


def run_relctl(*args: str, state: Path = STATE) -> subprocess.CompletedProcess[str]:
    """Run relctl; on Ctrl-C let it clean up (stop its Locust, its probe) before we go on."""
    proc = subprocess.Popen([*RELCTL, "--state-dir", str(state), *args], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate()
    except BaseException:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


# -- the lab -------------------------------------------------------------------------------

def fresh_state() -> None:
    """An empty state dir; a lab left running by an earlier, killed run is stopped first."""
    if (STATE / "lab").exists():
        lab_down()
    shutil.rmtree(STATE, ignore_errors=True)
    STATE.mkdir(parents=True)


def start_lab() -> None:
    """2 primaries + 1 backup; 1.1.0 released through relctl (last good); the backup
    site, cold, untouched by hand: it follows the release (the plan lists the manifest
    under ``releases``, and ``replicate`` first makes the plan known to the journal)."""
    say(f"lab up (2 primaries, 1 backup) at {BASE}, state {STATE}")
    relctl(STATE, "lab", "up", "--primary", "2", "--backup", "1", "--base-address", BASE,
           *LEDGER)
    deploy_ledger(STATE, "1.0.0", "app_primary")
    relctl(STATE, "replicate", "--plan", PLAN)
    say("relctl apply examples/releases/ledger-1.1.0.yml (the backup site follows)")
    outcome = relctl(STATE, "apply", "examples/releases/ledger-1.1.0.yml", "--yes")
    say(f"ledger-1.1.0: {outcome.get('state')}; backup site: {outcome.get('backup_site')}")


def lab_down() -> None:
    """Stop the lab and its ssh masters; a failure is reported, never raised."""
    result = run_relctl("lab", "down", "--json")
    if result.returncode != 0:
        print(f"WARNING: relctl lab down failed (exit {result.returncode}):\n"
              f"{result.stdout}{result.stderr}", file=sys.stderr)


# -- relctl's failover: the site-loss drill -------------------------------------------------

def drill(run: int, scenario: str = "site-loss", plan: str = PLAN, state: Path = STATE
          ) -> dict[str, Any]:
    """One drill of ``scenario`` with ``plan``; its report's measures, with its verdict."""
    result = run_relctl("drill", scenario, "--plan", plan, "--json", state=state)
    try:
        document = json.loads(result.stdout)
    except json.JSONDecodeError:
        document = {}
    if result.returncode not in (0, 10):  # 10: ran, but missed a target: still a figure
        raise SystemExit(f"drill {run} failed (exit {result.returncode}): "
                         f"{document.get('message')}\nwarnings: {document.get('warnings')}\n"
                         f"problems: {document.get('figures', {}).get('problems')}\n"
                         f"stderr:\n{result.stderr}")
    report = document["figures"]
    measures: dict[str, Any] = report["measures"]
    say(f"{scenario} drill {run} (id {report['id']}): {report['verdict']}, rto "
        f"{measures.get('rto_s')} s, failed {measures.get('load_failures')} of "
        f"{measures.get('load_requests')} (idempotent {measures.get('load_failures_idempotent')}), "
        f"switch {measures.get('switch_s')} s, served after by "
        f"{measures.get('served_by_after')}")
    return {**measures, "verdict": report["verdict"]}


def test_failover(run: int) -> dict[str, Any]:
    """One test failover: its would-be RTO (start -> every function answered on the
    backup), preparation and verification seconds."""
    result = run_relctl("drill", "test-failover", "--plan", PLAN, "--json")
    document = json.loads(result.stdout) if result.stdout.strip() else {}
    if result.returncode != 0:
        raise SystemExit(f"test failover {run} failed (exit {result.returncode}): "
                         f"{document.get('message')}\n{result.stderr}")
    measures: dict[str, Any] = document["figures"]["measures"]
    say(f"test failover {run}: would-be RTO {measures.get('rto_s')} s")
    return measures


# -- HAProxy's own failover: health checks only ---------------------------------------------

def health() -> tuple[bool, str]:
    """``GET /health`` through the LB: answered 200?, and which server answered."""
    try:
        with HTTP.open(f"{LB_URL}/health", timeout=1) as answer:
            return answer.status == 200, answer.headers.get("X-Served-By", "")
    except (OSError, http.client.HTTPException):  # URLError/HTTPError are OSErrors
        return False, ""


def wait_served_by(server: str) -> None:
    """Wait until the LB answers from ``server``."""
    deadline = time.monotonic() + WAIT_S
    while health() != (True, server):
        if time.monotonic() > deadline:
            raise SystemExit(f"the LB did not serve from {server} within {WAIT_S:.0f} s")
        time.sleep(POLL_S)


def primary_hosts() -> list[psutil.Process]:
    """The primaries' PID 1 (sshd), from ``relctl lab status``; only this lab's own."""
    status = relctl(STATE, "lab", "status")
    hosts = [psutil.Process(h["pid"]) for h in status["hosts"] if h["group"] == "app_primary"]
    for host in hosts:  # a recycled pid would not run this lab's sshd_config
        if str(STATE) not in " ".join(host.cmdline()):
            raise SystemExit(f"pid {host.pid} is not a host of the lab in {STATE}")
    return hosts


def haproxy_failover(run: int) -> dict[str, Any]:
    """Kill every primary host; seconds until the LB answers 200 again, failed polls."""
    wait_served_by("primary-1")
    victims = primary_hosts()
    fault = time.monotonic()
    for victim in victims:
        victim.kill()
    psutil.wait_procs(victims, timeout=5)  # the host's namespace dies with its PID 1
    failed = 0
    while True:
        ok, server = health()
        if ok and not server.startswith("primary-"):
            break
        failed += 1
        if time.monotonic() - fault > WAIT_S:
            raise SystemExit(f"HAProxy run {run}: no answer {WAIT_S:.0f} s after the fault")
        time.sleep(POLL_S)
    restored = time.monotonic() - fault
    say(f"HAProxy run {run}: served by {server} {restored:.3f} s after the kill, "
        f"{failed} failed polls")
    return {"failover_s": restored, "failed_polls": failed, "served_by": server}


def restore_primaries() -> None:
    """Restart the lost hosts, put the service back on them, wait for primary-1."""
    relctl(STATE, "lab", "up")
    deploy_ledger(STATE, "1.1.0", "app_primary")
    wait_served_by("primary-1")


# -- figures ---------------------------------------------------------------------------------

def row(name: str, values: Sequence[float | None]) -> str:
    present = [v for v in values if v is not None]
    if not present:
        return f"  {name:<24} {'-':>9} {'-':>9} {'-':>9} {0:>5}"
    spec = "9g" if name in COUNTS else "9.3f"
    figures = (statistics.median(present), min(present), max(present))
    return f"  {name:<24} " + " ".join(f"{v:{spec}}" for v in figures) + f" {len(present):>5}"


def table(title: str, runs: list[dict[str, Any]], keys: Sequence[str]) -> None:
    print(title)
    print(f"  {'figure':<24} {'median':>9} {'min':>9} {'max':>9} {'runs':>5}")
    for key in keys:
        print(row(key, [r.get(key) for r in runs]))
    print(flush=True)


def median(runs: list[dict[str, Any]], key: str) -> float | None:
    present = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(present) if present else None


def verdict_line(name: str, value: float | None, goal: float) -> str:
    if value is None:
        return f"  {name:<50} {'-':>7}    goal <= {goal:g} s  NOT MEASURED"
    return (f"  {name:<50} {value:7.3f} s  goal <= {goal:g} s  "
            f"{'met' if value <= goal else 'MISSED'}")


def failed_requests(name: str, drills: list[dict[str, Any]]) -> None:
    """Failed requests of all runs together, split idempotent / not, against the goals."""
    total = sum(d.get("load_requests") or 0 for d in drills)
    failed = sum(d.get("load_failures") or 0 for d in drills)
    idem = sum(d.get("load_failures_idempotent") or 0 for d in drills)
    idem_total = sum(d.get("load_requests_idempotent") or 0 for d in drills)
    other = sum(d.get("load_failures_non_idempotent") or 0 for d in drills)
    other_total = sum(d.get("load_requests_non_idempotent") or 0 for d in drills)
    ratio = failed / total if total else 0.0
    print(f"failed requests, {name} (all {len(drills)} runs): {failed} of {total} "
          f"({ratio:.2%}; goal <= {GOAL_FAILURE_RATIO:.1%}: "
          f"{'met' if ratio <= GOAL_FAILURE_RATIO else 'MISSED'}); idempotent {idem} of "
          f"{idem_total} (goal {GOAL_IDEMPOTENT_FAILURES}: "
          f"{'met' if idem <= GOAL_IDEMPOTENT_FAILURES else 'MISSED'}); non-idempotent "
          f"{other} of {other_total}", flush=True)


def comparison(drills: list[dict[str, Any]], checks: list[dict[str, Any]]) -> None:
    print(f"comparison (medians; goals: switch <= {GOAL_SWITCH_S:g} s, "
          f"fault to restored service <= {GOAL_RESTORED_S:g} s)")
    print(verdict_line("relctl switch (HAProxy runtime API)", median(drills, "switch_s"),
                       GOAL_SWITCH_S))
    print(verdict_line("relctl fault -> restored, verified (rto_s)", median(drills, "rto_s"),
                       GOAL_RESTORED_S))
    print(verdict_line("relctl fault -> restored, users' probe (outage_s)",
                       median(drills, "outage_s"), GOAL_RESTORED_S))
    print(verdict_line("HAProxy health checks fault -> restored", median(checks, "failover_s"),
                       GOAL_RESTORED_S), flush=True)


def stop_on_sigterm(signum: int, _frame: object) -> None:
    """SIGTERM unwinds like Ctrl-C, so the ``finally`` still takes the lab down."""
    raise SystemExit(128 + signum)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    fresh_state()
    try:
        start_lab()
        drills = [drill(run) for run in range(1, runs + 1)]
        table(f"relctl failover: drill site-loss x{len(drills)} (2 primaries, 1 backup); "
              f"verdicts {', '.join(d['verdict'] for d in drills)}", drills, MEASURES)
        hosts = [drill(run, "host-loss") for run in range(1, runs + 1)]
        table(f"drill host-loss x{len(hosts)} (HAProxy moves the traffic); verdicts "
              f"{', '.join(d['verdict'] for d in hosts)}", hosts, MEASURES)
        failed_requests("site-loss", drills)
        failed_requests("host-loss", hosts)
        tests = [test_failover(run) for run in range(1, runs + 1)]
        table(f"drill test-failover x{len(tests)} (the LB and the primaries untouched)", tests,
              ("rto_s", "prepare_s", "verify_s"))
        checks = []
        for run in range(1, runs + 1):
            checks.append(haproxy_failover(run))
            restore_primaries()
        table(f"HAProxy health-check failover (inter 2s fall 3 rise 2) x{len(checks)}; "
              f"served by {', '.join(c['served_by'] for c in checks)}", checks,
              ("failover_s", "failed_polls"))
        comparison(drills, checks)
    finally:
        say("lab down")
        lab_down()


if __name__ == "__main__":
    main()
