"""A drill's JUnit XML: a test case per critical function and target, judged as the drill
judged them (the targets come from the example plan through ``judge_targets``)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from controller.engine.continuity import load_plan
from controller.planning.continuity import judge_targets
from controller.reports.drill_junit import drill_junit_xml

PLAN = Path(__file__).resolve().parents[2] / "examples" / "continuity" / "ledger-lab.yml"


def report(recovered: dict[str, float | None], rpo: float | None, verdict: str = "pass",
           failures: int = 0, max_failure_ratio: float | None = None) -> dict[str, Any]:
    plan, _ = load_plan(PLAN)
    return {"id": 7, "scenario": "site-loss", "service": "ledger", "environment": "lab",
            "started": "2026-11-22T12:00:00+00:00", "verdict": verdict,
            "targets": [t.__dict__ for t in judge_targets(plan, recovered, rpo)],
            "measures": {"load_failures": failures, "load_requests": 1000,
                         "probe_failures": 1, "probe_requests": 80},
            "problems": [] if verdict != "fail" else ["the backup never answered"],
            "max_failure_ratio": max_failure_ratio}


def cases(xml: str) -> dict[str, str]:
    """Test case name -> "pass", or the kind of its outcome (failure, error, skipped)."""
    suite = ET.fromstring(xml).find("testsuite")
    assert suite is not None
    found = {}
    for case in suite.iter("testcase"):
        kinds = [k for k in ("failure", "error", "skipped") if case.find(k) is not None]
        found[case.get("name", "")] = kinds[0] if kinds else "pass"
    assert int(suite.get("tests", "0")) == len(found)
    assert int(suite.get("failures", "0")) == list(found.values()).count("failure")
    return found


def test_a_drill_within_its_targets_passes_every_case() -> None:
    got = cases(drill_junit_xml(report({"record-transactions": 0.2, "service-health": 0.2}, 1.0,
                                       max_failure_ratio=0.01, failures=3)))
    assert got == {"drill": "pass", "rto[record-transactions]": "pass",
                   "rpo[record-transactions]": "pass", "rto[service-health]": "pass",
                   "rpo[service-health]": "pass", "failed-requests": "pass"}


def test_an_rto_target_below_the_measured_rto_is_a_failing_case() -> None:
    plan, _ = load_plan(PLAN)
    slow = max(f.rto for f in plan.functions) + 5.0
    xml = drill_junit_xml(report({"record-transactions": slow, "service-health": 0.2}, 1.0))
    got = cases(xml)
    assert got["rto[record-transactions]"] == "failure"
    assert got["rto[service-health]"] == "pass"
    failure = ET.fromstring(xml).find(".//testcase[@name='rto[record-transactions]']/failure")
    assert failure is not None and failure.get("message", "").startswith(f"RTO {slow} s > target")


def test_unverified_functions_fail_and_a_failed_drill_is_an_error() -> None:
    got = cases(drill_junit_xml(report({"record-transactions": None, "service-health": None},
                                       None, verdict="fail")))
    assert got["drill"] == "error"
    assert got["rto[record-transactions]"] == got["rto[service-health]"] == "failure"
    assert got["rpo[record-transactions]"] == "skipped"  # no data was at risk


def test_failed_requests_are_judged_only_against_the_plans_ratio() -> None:
    assert cases(drill_junit_xml(report({}, None, failures=14)))["failed-requests"] == "skipped"
    judged = report({}, None, failures=14, max_failure_ratio=0.01)
    assert cases(drill_junit_xml(judged))["failed-requests"] == "failure"
