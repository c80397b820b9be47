"""A drill's report as JUnit XML, for CI systems: one test case per critical function and
target (RTO, RPO), one for the requests that failed under the drill's load, and one for
the drill itself (the fault was injected, detected and recovered from). No I/O.

    drill_junit_xml(report) -> str      ``report``: the drill's JSON document
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any


def drill_junit_xml(report: dict[str, Any]) -> str:
    """The drill as a JUnit test suite; a missed target is a failing test case."""
    classname = f"relctl.drill.{report['scenario']}"
    cases = [_drill_case(report, classname)]
    for target in report["targets"]:
        cases += [_rto_case(target, classname), _rpo_case(target, classname)]
    cases.append(_requests_case(report, classname))
    suite = ET.Element("testsuite", name=f"relctl drill {report['id']} {report['scenario']} "
                       f"({report['service']}@{report['environment']})",
                       timestamp=str(report.get("started", "")))
    suite.extend(cases)
    for kind, attribute in (("failure", "failures"), ("error", "errors"),
                            ("skipped", "skipped")):
        suite.set(attribute, str(sum(c.find(kind) is not None for c in cases)))
    suite.set("tests", str(len(cases)))
    suites = ET.Element("testsuites", name=f"relctl drill {report['id']}")
    suites.append(suite)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def _case(classname: str, name: str, seconds: float | None = None) -> ET.Element:
    case = ET.Element("testcase", classname=classname, name=name)
    if seconds is not None:
        case.set("time", f"{seconds:.3f}")
    return case


def _add(case: ET.Element, kind: str, message: str, text: str = "") -> ET.Element:
    element = ET.SubElement(case, kind, message=message)
    element.text = text or message
    return case


def _drill_case(report: dict[str, Any], classname: str) -> ET.Element:
    case = _case(classname, "drill")
    problems = "\n".join(str(p) for p in report.get("problems", []))
    if report["verdict"] == "fail":
        return _add(case, "error", "the drill did not recover" + (f": {problems}" if problems
                                                                   else ""), problems)
    return case


def _rto_case(target: dict[str, Any], classname: str) -> ET.Element:
    measured, goal = target["rto_s"], target["rto_target_s"]
    case = _case(classname, f"rto[{target['function']}]", measured)
    if measured is None:
        return _add(case, "failure", f"{target['function']} was never verified after the "
                    f"fault (RTO target {goal} s)")
    if not target["rto_met"]:
        return _add(case, "failure", f"RTO {measured} s > target {goal} s")
    return case


def _rpo_case(target: dict[str, Any], classname: str) -> ET.Element:
    measured, goal = target["rpo_s"], target["rpo_target_s"]
    case = _case(classname, f"rpo[{target['function']}]")
    if measured is None:
        return _add(case, "skipped", "no data was at risk in this scenario")
    if not target["rpo_met"]:
        return _add(case, "failure", f"RPO {measured} s > target {goal} s")
    return case


def _requests_case(report: dict[str, Any], classname: str) -> ET.Element:
    measures = report["measures"]
    failed, total = int(measures.get("load_failures") or 0), int(measures.get("load_requests")
                                                                 or 0)
    case = _case(classname, "failed-requests")
    ET.SubElement(case, "system-out").text = (
        f"{failed} of {total} requests failed under the drill's load (idempotent "
        f"{measures.get('load_failures_idempotent', '?')} of "
        f"{measures.get('load_requests_idempotent', '?')}, non-idempotent "
        f"{measures.get('load_failures_non_idempotent', '?')} of "
        f"{measures.get('load_requests_non_idempotent', '?')}); the probe saw "
        f"{measures.get('probe_failures', 0)} of {measures.get('probe_requests', 0)}")
    limit = report.get("max_failure_ratio")
    if limit is None:
        return _add(case, "skipped", f"{failed} of {total} failed; the plan sets no "
                    "drill.max_failure_ratio to judge them")
    ratio = failed / total if total else 0.0
    if ratio > limit:
        return _add(case, "failure", f"{failed} of {total} requests failed ({ratio:.2%}) > "
                    f"max_failure_ratio {limit:.2%}")
    return case
