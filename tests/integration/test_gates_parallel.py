"""The testinfra gate on a lab of its own: hosts in parallel report exactly what a serial
run reports (same JUnit test ids, same failures), and the gate passes on a good deploy."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.adapters.testinfra import CheckRun, run_checks
from controller.models.gates import CheckResult
from tests.integration.conftest import RunningLab, start_lab, stop_lab
from tests.relctl_cli import ROOT, deploy_ledger

GATE = ROOT / "tests" / "gates" / "test_ledger_release.py"
HOSTS = ["primary-1", "primary-2", "primary-3"]


@pytest.fixture(scope="module")
def mixed_lab() -> Iterator[RunningLab]:
    """3 primaries on ledger 1.0.0, then primary-2 alone on 1.1.0."""
    running = start_lab(primary=3, backup=0, base_address="127.0.9.190")
    try:
        for version, limit in (("1.0.0", "app_primary"), ("1.1.0", "primary-2")):
            deployed = deploy_ledger(running.state_dir, version, limit)
            assert deployed.returncode == 0, deployed.stdout[-2000:]
        yield running
    finally:
        stop_lab(running)


def gate(lab: RunningLab, hosts: list[str], expected: str, parallel: int) -> CheckResult:
    junit = lab.state_dir / "gates" / f"{expected}-{parallel}-{len(hosts)}.xml"
    return run_checks(CheckRun([GATE], hosts, lab.inventory, lab.ansible_cfg, junit,
                               {"EXPECTED_VERSION": expected}, parallel=parallel))


def case_ids(junit: Path) -> dict[str, bool]:
    """Every test id in a JUnit file -> whether it failed."""
    cases = ET.parse(junit).getroot().iter("testcase")
    return {str(c.get("name")): c.find("failure") is not None or c.find("error") is not None
            for c in cases}


def test_parallel_reports_the_same_failures_as_serial(mixed_lab: RunningLab) -> None:
    serial = gate(mixed_lab, HOSTS, "1.0.0", parallel=1)
    parallel = gate(mixed_lab, HOSTS, "1.0.0", parallel=8)
    assert case_ids(parallel.junit) == case_ids(serial.junit)
    assert sorted(parallel.failed) == sorted(serial.failed)
    failed = {name for name, bad in case_ids(parallel.junit).items() if bad}
    assert failed == {"test_current_release_is_the_expected_version[ansible://primary-2]",
                      "test_version_endpoint_reports_the_release[ansible://primary-2]"}
    assert (parallel.tests, parallel.failures) == (12, 2)
    assert not list(parallel.junit.parent.glob("*.parts")), "one JUnit file per gate"


def test_gate_passes_on_a_good_deploy(mixed_lab: RunningLab) -> None:
    result = gate(mixed_lab, ["primary-1", "primary-3"], "1.0.0", parallel=8)
    assert (result.tests, result.failures, result.failed) == (8, 0, [])
    assert set(case_ids(result.junit)) == {
        f"{test}[ansible://{host}]" for host in ("primary-1", "primary-3")
        for test in ("test_current_release_is_the_expected_version",
                     "test_service_is_running_and_healthy",
                     "test_version_endpoint_reports_the_release",
                     "test_transactions_can_be_read")}
