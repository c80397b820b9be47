"""Run pytest-testinfra checks against hosts, one pytest per group of hosts at once,
keeping one JUnit XML file per gate.

The hosts of a gate are split into at most ``CheckRun.parallel`` groups; each group runs
in a pytest of its own (an owned child, journaled like every other), all at once. Each
pytest reaches its hosts over the ssh ControlPersist connections Ansible opened
(``testinfra_plugin.py``, ``connections.py``); test ids stay ``test_x[ansible://HOST]``.
The groups' JUnit files are merged into the gate's one file, their logs into one log.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from controller.adapters.ansible import read_inventory
from controller.adapters.children import ChildRecorder, owned_child, start_owned, wait_all
from controller.adapters.connections import resolve_connections
from controller.models.gates import CheckResult
from controller.paths import tools_path

# The file of targets the plugin reads (testinfra_plugin.TARGETS_ENV; not imported from it:
# it imports pytest and testinfra, which every relctl command would then load).
TARGETS_ENV = "RELCTL_TESTINFRA_TARGETS"
# Set for each gate pytest: it loads only the plugins it is named (see _run_groups).
AUTOLOAD_ENV = "PYTEST_DISABLE_PLUGIN_AUTOLOAD"

# pytests at once: one per core (at most 8). Each check is a local ssh client, a remote
# command and pytest's own work, all CPU: bench/testinfra_gate.py on 10 hosts and 2 cores
# measured 13.7 s serial, 8.5 s with 2 pytests, 9.3 s with 4, 11.9 s with 8.
PARALLEL = min(8, os.cpu_count() or 2)
TIMEOUT_S = 600.0


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
    parallel: int = PARALLEL
    connections_dir: Path | None = None  # cache of the hosts' ssh command lines
    plugins: list[str] = field(default_factory=list)  # more pytest plugins, by module


def run_checks(run: CheckRun) -> CheckResult:
    """Run the testinfra tests against ``run.hosts``, groups of hosts in parallel."""
    parts = run.junit.with_name(f"{run.junit.stem}.parts")
    shutil.rmtree(parts, ignore_errors=True)
    parts.mkdir(parents=True)
    targets = parts / "targets.json"
    targets.write_text(json.dumps(host_targets(run.inventory, run.ansible_cfg, run.hosts,
                                               run.connections_dir)))
    groups = split_hosts(run.hosts, run.parallel)
    codes = _run_groups(run, groups, parts, targets)
    reports = [parts / f"{index}.xml" for index in range(len(groups))]
    merge_junit([(r, g, c) for r, g, c in zip(reports, groups, codes, strict=True)],
                run.junit)
    with run.junit.with_suffix(".log").open("w") as log:
        for index in range(len(groups)):
            log.write((parts / f"{index}.log").read_text(errors="replace"))
    shutil.rmtree(parts, ignore_errors=True)
    return parse_junit(run.junit)


def host_targets(inventory: Path, ansible_cfg: Path, hosts: list[str],
                 connections_dir: Path | None = None) -> dict[str, object]:
    """For each host: its ssh command as Ansible builds it (None: through Ansible) and
    its variables, as testinfra's ``host.ansible.get_variables()`` returns them."""
    found = read_inventory(inventory, ansible_cfg)
    connections = resolve_connections(inventory, ansible_cfg, hosts, connections_dir)
    targets: dict[str, object] = {}
    for host in hosts:
        variables = dict(found.hostvars.get(host, {}))
        target = connections.get(host)
        variables.setdefault("inventory_hostname", host)
        variables.setdefault("group_names", sorted(
            g for g, members in found.groups.items() if host in members and g != "all"))
        variables.setdefault("groups", found.groups)
        targets[host] = {"argv": list(target.argv) if target else None,
                         "become": target.become if target else False,
                         "become_user": target.become_user if target else None,
                         "variables": variables}
    return targets


def split_hosts(hosts: list[str], parallel: int) -> list[list[str]]:
    """``hosts`` in at most ``parallel`` groups of nearly equal size, in order."""
    count = max(1, min(len(hosts), parallel))
    size, extra = divmod(len(hosts), count)
    groups, start = [], 0
    for index in range(count):
        end = start + size + (1 if index < extra else 0)
        groups.append(hosts[start:end])
        start = end
    return [g for g in groups if g]


def _command(run: CheckRun, hosts: list[str], junit: Path) -> list[str]:
    spec = ",".join(f"ansible://{h}" for h in hosts)
    plugins = [arg for module in ["testinfra.plugin", *run.plugins] for arg in ("-p", module)]
    return [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *plugins,
            "-p", "controller.adapters.testinfra_plugin", "-q", "--tb=line",
            f"--hosts={spec}", f"--ansible-inventory={run.inventory}",
            f"--junitxml={junit}", "-o", "junit_family=xunit2", "--rootdir",
            str(run.tests[0].parent), *map(str, run.tests)]


def _run_groups(run: CheckRun, groups: list[list[str]], parts: Path,
                targets: Path) -> list[int]:
    """Start one owned pytest per group, all at once; wait for all; their exit codes."""
    # Only the plugins named (_command): the ~1 s of importing every plugin installed
    # beside relctl (Locust's, which patches the process with gevent; Hypothesis's...)
    # was half of a gate's pytest start-up.
    env = {**os.environ, **run.env, "ANSIBLE_CONFIG": str(run.ansible_cfg),
           "PATH": tools_path(), TARGETS_ENV: str(targets), AUTOLOAD_ENV: "1"}
    with contextlib.ExitStack() as stack:
        started = []
        for index, hosts in enumerate(groups):
            log = stack.enter_context((parts / f"{index}.log").open("w"))
            label = f"testinfra:{run.junit.stem}" + (f":{index}" if len(groups) > 1 else "")
            child = stack.enter_context(owned_child(run.children, label, "pytest"))
            started.append(start_owned(child, _command(run, hosts, parts / f"{index}.xml"),
                                       env=env, stdout=log, stderr=log))
        return wait_all(started, TIMEOUT_S)


def merge_junit(parts: list[tuple[Path, list[str], int]], out: Path) -> None:
    """One JUnit file from the groups' files, test cases in group order. A group that
    wrote no report (killed, timed out) becomes an error case naming its hosts; when no
    group wrote one, no file is written (the gate is then inconclusive)."""
    if not any(report.exists() for report, _, _ in parts):
        out.unlink(missing_ok=True)
        return
    suite = ET.Element("testsuite", name="pytest")
    for report, hosts, code in parts:
        if report.exists():
            suite.extend(ET.parse(report).getroot().iter("testcase"))
        else:
            suite.append(_missing_case(hosts, code))
    cases = list(suite.iter("testcase"))
    suite.set("tests", str(len(cases)))
    for kind, attribute in (("failure", "failures"), ("error", "errors"),
                            ("skipped", "skipped")):
        suite.set(attribute, str(sum(c.find(kind) is not None for c in cases)))
    suite.set("time", f"{sum(float(c.get('time') or 0) for c in cases):.3f}")
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    ET.ElementTree(root).write(out, encoding="utf-8", xml_declaration=True)


def _missing_case(hosts: list[str], code: int) -> ET.Element:
    case = ET.Element("testcase", classname="relctl.gate",
                      name=f"pytest[{','.join(f'ansible://{h}' for h in hosts)}]", time="0")
    ET.SubElement(case, "error", message=f"pytest ended with exit code {code} "
                  "and wrote no JUnit report (see the gate's .log)")
    return case


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
