"""What every test layer may use: the sample ledger's releases built; Hypothesis's caches
outside the source tree. (A PostgreSQL server is for tests/integration only.)"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import pytest

from tests.unit.ledger_support import harness

# No test writes into the source tree: Hypothesis keeps its caches (.hypothesis/, in the
# working directory by default) in a temporary folder instead.
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY",
                      str(Path(tempfile.gettempdir()) / "relctl-tests-hypothesis"))


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every ledger release built and unpacked in a temporary folder."""
    built: dict[str, Path] = harness.prepare_releases(tmp_path_factory.mktemp("ledger"))
    return built


# The suite's timeline, for balancing the two workers of `make test`: with
# RELCTL_TEST_TIMELINE=FILE every test appends "worker module start end" (monotonic
# seconds: one clock for every process of this machine) to FILE.
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> object:
    path = os.environ.get("RELCTL_TEST_TIMELINE")
    started = time.monotonic()
    yield
    if path and item.nodeid.startswith("tests/"):  # not a gate's own pytest run
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        module = item.nodeid.split("::")[0]
        with open(path, "a", encoding="utf-8") as out:
            out.write(f"{worker} {module} {started:.2f} {time.monotonic():.2f}\n")


# What each lab module costs one worker (seconds, from a RELCTL_TEST_TIMELINE of a full
# run: scripts/timeline.py prints it). `make test` hands modules to its two workers in
# this order, the dearest first (pytest-xdist --no-loadscope-reorder), so that no long
# module starts last while the other worker idles; the rest (unit tests) fill in after.
MODULE_SECONDS = {f"tests/integration/{name}": seconds for name, seconds in {
    "test_crash.py": 275, "test_continuity.py": 255, "test_pg_continuity.py": 215,
    "test_canary.py": 205, "test_release.py": 190, "test_postgresql_items.py": 185,
    "test_wheel.py": 185, "test_snapshots.py": 115, "test_rollback_final.py": 115,
    "test_litestream.py": 110, "test_locust_workers.py": 65, "test_monitor.py": 65,
    "test_serve_browser.py": 45, "test_gates_parallel.py": 45, "test_values_are_data.py": 30,
    "test_lab.py": 25, "test_mitogen.py": 25, "test_shared_journal.py": 20,
    "test_restore_confinement.py": 15,
}.items()}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The dearest modules first (``MODULE_SECONDS``), each module's tests in their order."""
    def cost(item: pytest.Item) -> int:
        return -MODULE_SECONDS.get(item.nodeid.split("::")[0], 0)

    items.sort(key=cost)  # stable: a module's tests keep their order
