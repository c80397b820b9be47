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
