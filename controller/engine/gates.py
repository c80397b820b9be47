"""Run a release's gates and record their figures and verdicts in the journal."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from controller.adapters.ansible import list_hosts, read_inventory
from controller.adapters.locust import LoadRun, RemoteWorkers, address_towards, run_load
from controller.adapters.testinfra import CheckRun, run_checks
from controller.engine.children import JournalChildren
from controller.engine.environment import Environment
from controller.errors import InputError
from controller.journal import Journal
from controller.models.gates import LoadStats, Verdict
from controller.models.manifest import Manifest
from controller.planning.gates import judge_checks, judge_load


@dataclass(frozen=True)
class GateRunner:
    """The gates of one release."""

    env: Environment
    journal: Journal
    release_id: int
    manifest: Manifest
    record: bool = True  # False: verdicts are only returned (the monitor keeps its own)

    def checks(self, hosts: list[str], phase: str, expected_version: str) -> Verdict:
        """Every testinfra gate against ``hosts``; the worst verdict wins."""
        verdicts = []
        for index, gate in enumerate(self.manifest.gates.testinfra):
            junit = self.env.gate_dir(self.release_id) / f"{phase}-testinfra-{index}.xml"
            env = {**gate.env, "RELCTL_EXPECTED_VERSION": expected_version,
                   "EXPECTED_VERSION": expected_version}
            result = run_checks(CheckRun([gate.tests], hosts, self.env.inventory,
                                         self.env.ansible_cfg, junit, env, self._children(),
                                         connections_dir=self.env.connections_dir,
                                         plugins=list(gate.plugins)))
            verdict = judge_checks(result)
            if self.record:
                self.journal.add_gate_result(
                    self.release_id, phase=phase, kind="testinfra", verdict=verdict.outcome,
                    figures={"tests": result.tests, "failures": result.failures,
                             "hosts": hosts, "reasons": verdict.reasons},
                    junit=junit)
            verdicts.append(verdict)
        return worst(verdicts)

    def load(self, phase: str, duration_s: float | None = None) -> LoadStats | None:
        """One Locust run through the load balancer (for the gate's duration unless
        ``duration_s`` is given), or None without a Locust gate."""
        gate = self.manifest.gates.locust
        if gate is None:
            return None
        url = gate.url or self.env.lb_url
        if not url:
            raise InputError("the Locust gate has no url and no lab load balancer is known")
        return run_load(LoadRun(gate.locustfile, url, gate.users, gate.spawn_rate,
                                duration_s or gate.duration_s,
                                self.env.gate_dir(self.release_id), phase,
                                workers=gate.workers, children=self._children(),
                                remote=self._remote_workers))

    @cached_property
    def _remote_workers(self) -> RemoteWorkers | None:
        """The load gate's worker hosts as the inventory resolves them, and the
        controller's address they connect back to (once for the baseline and candidate)."""
        gate = self.manifest.gates.locust
        spec = gate.worker_hosts if gate is not None else None
        if spec is None:
            return None
        hosts = list_hosts(self.env.inventory, self.env.ansible_cfg, spec.hosts)
        if not hosts:
            raise InputError(f"no host in {self.env.inventory} matches "
                             f"gates.locust.worker_hosts.hosts {spec.hosts!r}")
        master = spec.master_host
        if master is None:
            address = read_inventory(self.env.inventory, self.env.ansible_cfg).addresses
            master = address_towards(address.get(hosts[0], hosts[0]))
        return RemoteWorkers(hosts, spec.per_host, list(spec.command), master,
                             spec.connect_s, self.env.inventory, self.env.ansible_cfg,
                             self.env.runs_dir)

    def _children(self) -> JournalChildren | None:
        """Journal each gate process when this runner records (a release's gates)."""
        if not self.record:
            return None
        return JournalChildren(self.journal, self.release_id, self.env.children_dir)

    def judge_load(self, candidate: LoadStats, baseline: LoadStats | None) -> Verdict:
        """Judge the candidate run against thresholds and the baseline; record both."""
        gate = self.manifest.gates.locust
        assert gate is not None
        verdict = judge_load(gate.thresholds, candidate, baseline)
        if self.record:
            self.journal.add_gate_result(
                self.release_id, phase="candidate", kind="locust", verdict=verdict.outcome,
                figures={"candidate": candidate.figures(),
                         "baseline": baseline.figures() if baseline else None,
                         "reasons": verdict.reasons})
        return verdict


def worst(verdicts: list[Verdict]) -> Verdict:
    """fail beats inconclusive beats pass; no verdict at all is a pass with no reasons."""
    for outcome in ("fail", "inconclusive"):
        found = [v for v in verdicts if v.outcome == outcome]
        if found:
            return Verdict(outcome, [r for v in found for r in v.reasons])
    return Verdict("pass", [r for v in verdicts for r in v.reasons])
