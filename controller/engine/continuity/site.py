"""The plan's two sites as its inventory has them: which hosts, the load balancer in
front, the probes (each host's health and version, the critical functions through the
LB), and what runs on a site's hosts (a release's playbooks, a declared command,
testinfra, relctl's host agent)."""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from controller.adapters import http
from controller.adapters.ansible import Inventory, PlaybookRun, failure_summary, run_playbook
from controller.adapters.host_agent import HostAgent
from controller.adapters.testinfra import CheckRun, run_checks
from controller.engine.continuity.loadbalancer import LoadBalancer, lb_for
from controller.engine.environment import Environment
from controller.errors import ContinuityError
from controller.models.continuity import ContinuityPlan, CriticalFunction
from controller.models.manifest import Manifest
from controller.paths import bundled_playbook
from controller.planning.versions import VersionRead, read_version


@dataclass(frozen=True)
class Verified:
    """The critical functions verified through the LB: seconds at which each passed
    (None: never within the timeout) and the servers that answered."""

    passed_at: dict[str, float | None]
    served_by: list[str]

    @property
    def all_passed(self) -> bool:
        return all(at is not None for at in self.passed_at.values())


@dataclass
class Site:
    """The primary and backup sites of a plan, their load balancer and their probes."""

    plan: ContinuityPlan
    inventory: Inventory
    env: Environment

    # -- topology ------------------------------------------------------------------------

    @property
    def primaries(self) -> list[str]:
        return self.inventory.groups[self.plan.sites.primary]

    @property
    def backups(self) -> list[str]:
        return self.inventory.groups[self.plan.sites.backup]

    @property
    def lb_address(self) -> str:
        return self.inventory.addresses[self.inventory.groups[self.plan.lb.group][0]]

    @property
    def lb_url(self) -> str:
        return f"http://{self.lb_address}:{self.plan.lb.port}"

    def address(self, host: str) -> str:
        return self.inventory.addresses[host]

    def host_url(self, host: str, path: str) -> str:
        return f"http://{self.address(host)}:{self.plan.service_port}{path}"

    def writer(self) -> str:
        """The host whose data is replicated: declared, else the first primary."""
        declared = [d.source for d in self.plan.data if d.source]
        return declared[0] if declared else self.primaries[0]

    @property
    def lb(self) -> LoadBalancer:
        """The plan's load balancer (``lb.kind``) on the first host of ``lb.group``."""
        return lb_for(self.plan, self.lb_address, self.env)

    # -- probes --------------------------------------------------------------------------

    def healthy(self, host: str, timeout: float = 0.5) -> bool:
        return http.request("GET", self.host_url(host, self.plan.health_path),
                            timeout=timeout).status == 200

    def version(self, host: str) -> VersionRead:
        """The release ``host`` runs, as the plan says to read it, or why it cannot be."""
        if self.plan.version_path is None:
            return VersionRead(None, "the plan has no version_path")
        url = self.host_url(host, self.plan.version_path)
        answer = http.request("GET", url, timeout=1)
        if answer.status != 200:
            return VersionRead(None, f"{url} answered {answer.status or answer.error}")
        return read_version(answer.body, self.plan.version_pointer, self.plan.version_pattern)

    def check(self, function: CriticalFunction) -> http.Answer:
        c = function.check
        return http.request(c.method, self.lb_url + c.path, c.body, c.timeout)

    def passes(self, function: CriticalFunction) -> tuple[bool, http.Answer]:
        answer = self.check(function)
        return answer.status == function.check.expect_status, answer

    def wait_functions(self, started: float, timeout: float) -> Verified:
        """Verify every critical function through the LB, most urgent first, until each
        passes or ``timeout``; when (seconds since ``started``) each passed, and by whom."""
        passed: dict[str, float | None] = {}
        served_by: set[str] = set()
        deadline = time.monotonic() + timeout
        for function in self.plan.by_priority():
            passed[function.name] = None
            while time.monotonic() < deadline:
                ok, answer = self.passes(function)
                if ok:
                    passed[function.name] = time.monotonic() - started
                    served_by.add(answer.served_by)
                    break
                time.sleep(0.05)
        return Verified(passed, sorted(s for s in served_by if s))

    # -- what runs on the hosts ------------------------------------------------------------

    @cached_property
    def agent(self) -> HostAgent:
        """relctl's host agent on the plan's hosts (ssh where it can, else Ansible)."""
        return HostAgent.reaching(self.env.inventory, self.env.ansible_cfg,
                                  [*self.primaries, *self.backups], self.env.runs_dir,
                                  self.env.connections_dir)

    def deploy(self, manifest: Manifest, hosts: list[str], tag: str) -> None:
        """Put ``hosts`` on the release of ``manifest`` with its own apply playbooks."""
        for playbook in manifest.playbooks.apply:
            result = run_playbook(PlaybookRun(
                playbook=playbook, inventory=self.env.inventory, ansible_cfg=self.env.ansible_cfg,
                runs_dir=self.env.runs_dir, extravars=dict(manifest.extravars),
                limit=",".join(hosts), label=tag, strategy=manifest.playbooks.strategy))
            if not result.succeeded:
                raise ContinuityError(f"cannot deploy {manifest.release} on "
                                      f"{', '.join(hosts)}: {failure_summary(result)}")

    def run_bundled(self, playbook: str, hosts: list[str], label: str,
                    extravars: dict[str, Any], failed: str) -> None:
        """One of relctl's own playbooks on ``hosts`` (``relctl_hosts: all``, limited to
        them); a failure is a ``ContinuityError`` that starts with ``failed``."""
        result = run_playbook(PlaybookRun(
            playbook=bundled_playbook(playbook), inventory=self.env.inventory,
            ansible_cfg=self.env.ansible_cfg, runs_dir=self.env.runs_dir,
            limit=",".join(hosts), label=label, extravars={"relctl_hosts": "all", **extravars}))
        if not result.succeeded:
            raise ContinuityError(f"{failed} on {', '.join(result.failed_hosts or hosts)}: "
                                  f"{failure_summary(result)}")

    def run_command(self, hosts: list[str], command: str, label: str) -> None:
        """A command the plan declares, run through Ansible's shell on ``hosts``."""
        self.run_fault_playbook(hosts, {"relctl_fault_kind": "command", "relctl_command_b64":
                                        base64.b64encode(command.encode()).decode()}, label)

    def run_fault_playbook(self, hosts: list[str], extravars: dict[str, Any], label: str
                           ) -> None:
        """relctl's fault playbook on ``hosts`` (a command, a pid file, a unit)."""
        self.run_bundled("relctl_fault.yml", hosts, label, extravars,
                         f"{extravars.get('relctl_fault_kind')} failed")

    def testinfra(self, manifest: Manifest | None, hosts: list[str], tag: str) -> list[str]:
        """The plan's testinfra checks (else the release's) on ``hosts``; what failed."""
        tests = [self.plan.failover.testinfra] if self.plan.failover.testinfra else []
        env: dict[str, str] = {}
        plugins: list[str] = []
        if manifest is not None:
            if not tests:
                tests = [g.tests for g in manifest.gates.testinfra]
            env = {k: v for g in manifest.gates.testinfra for k, v in g.env.items()}
            plugins = list(dict.fromkeys(p for g in manifest.gates.testinfra for p in g.plugins))
        if not tests:
            return []
        result = run_checks(CheckRun(tests=tests, hosts=hosts, inventory=self.env.inventory,
                                     ansible_cfg=self.env.ansible_cfg,
                                     junit=self.env.state_dir / "continuity" / f"{tag}.xml",
                                     env=env, connections_dir=self.env.connections_dir,
                                     plugins=plugins))
        if result.tests == 0:
            return [f"no testinfra result (see {result.junit.with_suffix('.log')})"]
        return result.failed
