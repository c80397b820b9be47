"""A continuity plan bound to its inventory, load balancer and journal.

The steps of failover and failback (``failover.py``, ``failback.py``) and drills use it
for the topology, the probes through the LB and each host, replication, deploys and
testinfra.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from controller.adapters import http
from controller.adapters.ansible import (
    Inventory,
    PlaybookRun,
    failure_summary,
    read_inventory,
    run_playbook,
)
from controller.adapters.host_agent import HostAgent
from controller.adapters.testinfra import CheckRun, run_checks
from controller.agent.protocol import CopyDataRequest, Entry, ItemSpec, LoadDataRequest
from controller.engine.continuity.loadbalancer import LoadBalancer, lb_for
from controller.engine.continuity.records import Progress, ReplicaRecord
from controller.engine.environment import Environment, environment_for
from controller.errors import ContinuityError
from controller.journal import Journal, ReleaseRecord
from controller.journal.records import ContinuityKind
from controller.manifest_loader import (
    ConfigError,
    Problem,
    YamlDocument,
    check_as_released,
    line_of,
    load_manifest,
    read_yaml,
    validate_document,
)
from controller.models.continuity import ContinuityPlan, CriticalFunction
from controller.models.manifest import Manifest
from controller.notify import notify_event
from controller.paths import bundled_playbook
from controller.planning.release import agent_item
from controller.planning.snapshots import services_request
from controller.planning.versions import VersionRead, read_version

PLAN_HINT = "relctl init writes a starter continuity plan; the README lists its fields"


@dataclass(frozen=True)
class Verified:
    """The critical functions verified through the LB: seconds at which each passed
    (None: never within the timeout) and the servers that answered."""

    passed_at: dict[str, float | None]
    served_by: list[str]

    @property
    def all_passed(self) -> bool:
        return all(at is not None for at in self.passed_at.values())


def load_plan(path: Path) -> tuple[ContinuityPlan, YamlDocument]:
    """The continuity plan at ``path`` and its document (lines for later errors)."""
    doc = read_yaml(path)
    return validate_document(doc, ContinuityPlan, hint=PLAN_HINT), doc


@dataclass
class Continuity:
    """A continuity plan bound to its inventory, load balancer and journal."""

    plan: ContinuityPlan
    plan_path: Path
    env: Environment
    journal: Journal
    inventory: Inventory
    progress: Progress = lambda _msg: None
    document: YamlDocument | None = None  # the plan's lines, for errors found later

    # -- building ------------------------------------------------------------------------

    @classmethod
    def open(cls, state_dir: Path, plan_path: Path, journal: Journal,
             inventory: Path | None = None, progress: Progress = lambda _m: None) -> Continuity:
        """Load and check the plan: its groups must exist in the inventory (exit 2)."""
        plan, doc = load_plan(plan_path)
        env = environment_for(state_dir, inventory or plan.inventory, "the continuity plan",
                              plan.service)
        found = read_inventory(env.inventory, env.ansible_cfg)
        problems = []
        for loc, group in ((("sites", "primary"), plan.sites.primary),
                           (("sites", "backup"), plan.sites.backup),
                           (("lb", "group"), plan.lb.group)):
            if not found.groups.get(group):
                known = ", ".join(sorted(g for g in found.groups if g not in ("all", "ungrouped")))
                problems.append(Problem(str(plan_path), line_of(doc, loc), ".".join(loc),
                                        f"no hosts in inventory group {group!r} of "
                                        f"{env.inventory} (groups: {known or 'none'})"))
        for index, data in enumerate(plan.data):
            if data.source and data.source not in found.groups.get(plan.sites.primary, []):
                problems.append(Problem(str(plan_path), line_of(doc, ("data", index, "source")),
                                        f"data[{index}].source",
                                        f"{data.source!r} is not a host of the primary site"))
        if problems:
            raise ConfigError(problems, hint=PLAN_HINT)
        journal.settle_abandoned()  # a crashed replication is failed, not "running"
        return cls(plan, plan_path, env, journal, found, progress, doc)

    def begin(self, kind: ContinuityKind, detail: dict[str, Any]) -> int:
        """Journal that a replication, failover, failback or drill of this plan starts;
        the record names the plan (``apply`` finds the plan that covers a release by it)."""
        return self.journal.begin_continuity(kind, self.plan.service, self.plan.environment,
                                             {"plan": str(self.plan_path.resolve()), **detail})

    def refuse(self, loc: tuple[str | int, ...], message: str, hint: str | None = None
               ) -> ConfigError:
        """An error naming the plan's file, the line of ``loc`` and the field."""
        line = line_of(self.document, loc) if self.document else None
        return ConfigError([Problem(str(self.plan_path), line, ".".join(map(str, loc)),
                                    message)], hint=hint)

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

    def host_url(self, host: str, path: str) -> str:
        return f"http://{self.inventory.addresses[host]}:{self.plan.service_port}{path}"

    def writer(self) -> str:
        """The host whose data is replicated: declared, else the first primary."""
        declared = [d.source for d in self.plan.data if d.source]
        return declared[0] if declared else self.primaries[0]

    def last_replica(self) -> ReplicaRecord | None:
        """The newest successful replication of the plan's service and environment."""
        found = self.journal.last_replication(self.plan.service, self.plan.environment)
        return ReplicaRecord.of(found) if found else None

    def last_good(self) -> ReleaseRecord | None:
        return self.journal.last_good_release(self.plan.service, self.plan.environment)

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

    # -- the data (its replication: ``methods.replication_of``) ---------------------------

    @cached_property
    def agent(self) -> HostAgent:
        """relctl's host agent on the plan's hosts (ssh where it can, else Ansible)."""
        return HostAgent.reaching(self.env.inventory, self.env.ansible_cfg,
                                  [*self.primaries, *self.backups], self.env.runs_dir,
                                  self.env.connections_dir)

    def capture(self, host: str, store: Path, tag: str) -> dict[str, Entry]:
        """A consistent copy of the plan's data on ``host`` (online backup API), kept in
        ``store/host/bundle`` with its ``index.json``; every copy's sha256 checked. The
        files are named by the plan's item names, never by what the host sent."""
        request = CopyDataRequest(command="copy_data", items=self._data_items())
        reply = self.agent.copy_data(tag, {host: request})[host]
        if not reply.ok:
            raise ContinuityError(f"cannot copy the data from {host}: {reply.error}")
        folder = store / host / "bundle"
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        sent, payloads = reply.data.get("index", {}), reply.data.get("payloads", {})
        index: dict[str, Entry] = {}
        for data in self.plan.data:
            entry = sent.get(data.name)
            body = base64.b64decode(payloads.get(entry.get("payload", ""), "")) if entry else b""
            if entry is None or hashlib.sha256(body).hexdigest() != entry.get("sha256"):
                raise ContinuityError(f"the copy of {data.name} fetched from {host} is "
                                      "missing or fails its sha256", hint="no host was changed")
            (folder / f"{data.name}.db").write_bytes(body)
            index[data.name] = {**entry, "payload": f"{data.name}.db"}
        (folder / "index.json").write_text(json.dumps(index, indent=1, sort_keys=True))
        return index

    def load(self, hosts: list[str], bundle: Path, tag: str) -> None:
        """Load the databases of a bundle folder (``capture``'s) into ``hosts`` through
        the online backup API; the host checks each sha256 before it touches anything."""
        index: dict[str, Entry] = json.loads((bundle / "index.json").read_text())
        payloads: dict[str, str] = {}
        for name, entry in index.items():
            payload = str(entry.get("payload", ""))
            if Path(payload).name != payload or payload in ("", ".", ".."):
                raise ContinuityError(f"the replica's index names {payload!r} for {name}: "
                                      f"not a file of {bundle}", hint="no host was changed")
            payloads[payload] = base64.b64encode((bundle / payload).read_bytes()).decode()
        request = LoadDataRequest(command="load_data", items=self._data_items(), index=index,
                                  payloads=payloads)
        replies = self.agent.load_data(tag, dict.fromkeys(hosts, request))
        failed = {h: r.error for h, r in replies.items() if not r.ok}
        if failed:
            raise ContinuityError(f"cannot load the data on {', '.join(sorted(failed))}: "
                                  + "; ".join(f"{h}: {e}" for h, e in sorted(failed.items())))

    def _data_items(self) -> list[ItemSpec]:
        return [ItemSpec(kind="data", name=d.name, path=d.path or "", engine=d.engine)
                for d in self.plan.data]

    # -- release on a site ---------------------------------------------------------------

    def release_manifest(self, record: ReleaseRecord) -> Manifest:
        """The manifest of the last good release, as it was when it was released."""
        return check_as_released(load_manifest(Path(record.manifest_path)), record,
                                 "restore the manifest as released, or release again")

    def deploy(self, record: ReleaseRecord, hosts: list[str], tag: str) -> None:
        """Put ``hosts`` on the release ``record`` with its own apply playbooks."""
        manifest = self.release_manifest(record)
        for playbook in manifest.playbooks.apply:
            result = run_playbook(PlaybookRun(
                playbook=playbook, inventory=self.env.inventory, ansible_cfg=self.env.ansible_cfg,
                runs_dir=self.env.runs_dir, extravars=dict(manifest.extravars),
                limit=",".join(hosts), label=tag))
            if not result.succeeded:
                raise ContinuityError(f"cannot deploy {record.name} on {', '.join(hosts)}: "
                                      f"{failure_summary(result)}")

    def run_command(self, hosts: list[str], command: str, label: str) -> None:
        """A command the plan declares, run through Ansible's shell on ``hosts``."""
        self.run_fault_playbook(hosts, {"relctl_fault_kind": "command", "relctl_command_b64":
                                        base64.b64encode(command.encode()).decode()}, label)

    def run_fault_playbook(self, hosts: list[str], extravars: dict[str, Any], label: str
                           ) -> None:
        """relctl's fault playbook on ``hosts`` (a command, a pid file, a unit)."""
        result = run_playbook(PlaybookRun(
            playbook=bundled_playbook("relctl_fault.yml"), inventory=self.env.inventory,
            ansible_cfg=self.env.ansible_cfg, runs_dir=self.env.runs_dir,
            limit=",".join(hosts), label=label, extravars={"relctl_hosts": "all", **extravars}))
        if not result.succeeded:
            raise ContinuityError(f"{extravars.get('relctl_fault_kind')} on "
                                  f"{', '.join(result.failed_hosts or hosts)} failed: "
                                  f"{failure_summary(result)}")

    def start_service(self, hosts: list[str], label: str) -> str | None:
        """The service started again on ``hosts``: the plan's ``restart`` command, else
        the last good release's service items (their ``start``); None: neither exists."""
        if self.plan.restart:
            self.run_command(hosts, self.plan.restart, f"{label}-restart")
            return f"service restarted on {', '.join(hosts)} (the plan's restart command)"
        good = self.last_good()
        items = self.service_items(good) if good is not None else []
        if good is None or not items:
            return None
        replies = self.agent.services(f"{label}-start",
                                      dict.fromkeys(hosts, services_request(items, True)))
        failed = {h: r.error for h, r in replies.items() if not r.ok}
        if failed:
            raise ContinuityError("cannot start the service on " + "; ".join(
                f"{h}: {e}" for h, e in sorted(failed.items())))
        return (f"{', '.join(i['name'] for i in items)} started on {', '.join(hosts)} "
                f"({good.name}'s service items)")

    def service_items(self, record: ReleaseRecord) -> list[ItemSpec]:
        """The service items of release ``record``'s manifest, as released."""
        return [agent_item(i) for i in self.release_manifest(record).items
                if i.kind == "service"]

    def testinfra(self, record: ReleaseRecord | None, hosts: list[str], tag: str) -> list[str]:
        """The release's testinfra checks on ``hosts``; returns what failed."""
        tests = [self.plan.failover.testinfra] if self.plan.failover.testinfra else []
        env: dict[str, str] = {}
        if record is not None:
            manifest = self.release_manifest(record)
            if not tests:
                tests = [g.tests for g in manifest.gates.testinfra]
            env = {k: v for g in manifest.gates.testinfra for k, v in g.env.items()}
        if not tests:
            return []
        result = run_checks(CheckRun(tests=tests, hosts=hosts, inventory=self.env.inventory,
                                     ansible_cfg=self.env.ansible_cfg,
                                     junit=self.env.state_dir / "continuity" / f"{tag}.xml",
                                     env=env, connections_dir=self.env.connections_dir))
        if result.tests == 0:
            return [f"no testinfra result (see {result.junit.with_suffix('.log')})"]
        return result.failed

    # -- load balancer -------------------------------------------------------------------

    @property
    def lb(self) -> LoadBalancer:
        """The plan's load balancer (``lb.kind``) on the first host of ``lb.group``."""
        return lb_for(self.plan, self.lb_address, self.env)

    def announce(self, event: Any, reason: str) -> None:
        """Tell the plan's channels (never fails the failover or failback)."""
        plan = self.plan
        contact = plan.contacts[0].channel if plan.contacts else "the operations team"
        notify_event(plan.notify, event, {"service": plan.service,
                                          "environment": plan.environment,
                                          "reason": reason, "contact": contact},
                     self.journal)

    def close(self) -> None:
        self.env.close_connections()


