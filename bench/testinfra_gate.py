"""The testinfra gate on 10 lab hosts, by how many pytests run at once.

Brings up its own lab (127.0.40.10), deploys ledger 1.0.0 with its plain playbook, opens
the ControlPersist masters once (a first, untimed gate run), then times the gate of
``examples/ledger`` (``tests/gates/test_ledger_release.py``) with 1, 2, 4 and 8 pytests at
once, each twice, printing the median and the ratio to the serial run. The anchor, run on
the same lab in the same run: 2 pytests that load every pytest plugin installed beside
relctl (Locust's, Hypothesis's...), as gates did before they loaded only testinfra's.

Run: .venv/bin/python bench/testinfra_gate.py [HOSTS]   (default 10)
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from _lab import LEDGER, ROOT, deploy_ledger, fresh_state_dir, relctl

from controller.adapters import testinfra
from controller.adapters.testinfra import CheckRun, run_checks

TESTS = ROOT / "tests" / "gates" / "test_ledger_release.py"


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    state = fresh_state_dir("testinfra-gate")
    relctl(state, "lab", "up", "--primary", str(count), "--backup", "0",
           "--base-address", "127.0.40.10", *LEDGER)
    try:
        deploy_ledger(state, "1.0.0")
        hosts = [f"primary-{n}" for n in range(1, count + 1)]

        def gate(parallel: int) -> float:
            run = CheckRun([TESTS], hosts, state / "lab" / "inventory.yml",
                           state / "lab" / "ansible.cfg", state / f"gate-{parallel}.xml",
                           {"EXPECTED_VERSION": "1.0.0"}, parallel=parallel,
                           connections_dir=state / "connections")
            started = time.monotonic()
            result = run_checks(run)
            took = time.monotonic() - started
            if result.failures or not result.tests:
                raise SystemExit(f"the gate failed: {result}")
            return took

        gate(8)  # masters open, connections resolved
        figures = {p: statistics.median([gate(p), gate(p)]) for p in (1, 2, 4, 8)}
        anchor = every_plugin(lambda: statistics.median([gate(2), gate(2)]))
    finally:
        relctl(state, "lab", "down")
    print(f"testinfra gate on {count} lab hosts ({len(hosts)} hosts, median of 2)")
    for parallel, seconds in figures.items():
        print(f"  {parallel} pytest(s) at once  {seconds:6.2f} s  "
              f"(ratio to serial {seconds / figures[1]:.2f})")
    print(f"  anchor: 2 pytests loading every installed plugin  {anchor:6.2f} s  "
          f"(2 pytests now / anchor: {figures[2] / anchor:.2f})")


def every_plugin(timed: Callable[[], float]) -> float:
    """``timed()`` with the gate's pytests loading every plugin pytest finds installed."""
    command, name = testinfra._command, testinfra.AUTOLOAD_ENV

    def autoloading(run: CheckRun, hosts: list[str], junit: Path) -> list[str]:
        argv = command(run, hosts, junit)
        at = argv.index("testinfra.plugin")  # autoloaded: loaded once, by its entry point
        return argv[:at - 1] + argv[at + 1:]

    testinfra._command, testinfra.AUTOLOAD_ENV = autoloading, "RELCTL_BENCH_UNSET"
    try:
        return timed()
    finally:
        testinfra._command, testinfra.AUTOLOAD_ENV = command, name


if __name__ == "__main__":
    main()
