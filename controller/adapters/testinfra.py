"""Run pytest-testinfra checks against hosts, in a subprocess, keeping JUnit XML."""

from __future__ import annotations

import os
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from controller.adapters.children import ChildRecorder, owned_child, run_owned
from controller.models.gates import CheckResult
from controller.paths import tools_path


@dataclass(frozen=True)
class CheckRun:
    """testinfra test files to run against some hosts of an inventory."""

    tests: list[Path]
    hosts: list[str]
    inventory: Path
    ansible_cfg: Path
    junit: Path
    env: dict[str, str] = field(default_factory=dict)
    children: ChildRecorder | None = None  # journals pytest before it starts


def run_checks(run: CheckRun) -> CheckResult:
    """Run the testinfra tests against ``run.hosts`` through the Ansible inventory."""
    run.junit.parent.mkdir(parents=True, exist_ok=True)
    hosts = ",".join(f"ansible://{h}" for h in run.hosts)
    command = [
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--tb=line",
        f"--hosts={hosts}", f"--ansible-inventory={run.inventory}",
        f"--junitxml={run.junit}", "-o", "junit_family=xunit2", "--rootdir",
        str(run.tests[0].parent), *map(str, run.tests),
    ]
    env = {**os.environ, **run.env, "ANSIBLE_CONFIG": str(run.ansible_cfg),
           "PATH": tools_path()}
    with run.junit.with_suffix(".log").open("w") as log, \
            owned_child(run.children, f"testinfra:{run.junit.stem}", "pytest") as child:
        run_owned(child, command, env=env, timeout=600, stdout=log, stderr=log)
    return parse_junit(run.junit)


def parse_junit(path: Path) -> CheckResult:
    """Counts and failed test ids from a JUnit XML report (none if pytest never wrote it)."""
    if not path.exists():
        return CheckResult(0, 0, 0, path, [])
    root = ET.parse(path).getroot()
    failed = []
    tests = skipped = 0
    for case in root.iter("testcase"):
        tests += 1
        if case.find("skipped") is not None:
            skipped += 1
        problem = case.find("failure")
        problem = problem if problem is not None else case.find("error")
        if problem is not None:
            message = (problem.get("message") or "").splitlines()[0:1]
            failed.append(f"{case.get('name')}: {' '.join(message)[:200]}")
    return CheckResult(tests, len(failed), skipped, path, failed)
