"""A continuity plan bound to its inventory, load balancer and journal, in three parts:

    services   the plan, journal, environment, progress, notices (``services.py``)
    site       topology, the LB, probes, what runs on the hosts (``site.py``)
    data       relctl's own copies of the data: capture, load (``site_data.py``)

``Continuity`` holds the three and the few steps that need two of them (a release put on
a site, its service started, its testinfra run). Failover, failback, drills and
preflight take it; each replication method gets only the parts it uses (``methods.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from controller.adapters.ansible import read_inventory
from controller.agent.protocol import ItemSpec
from controller.engine.continuity.records import Progress
from controller.engine.continuity.services import Services
from controller.engine.continuity.site import Site, Verified
from controller.engine.continuity.site_data import SiteData
from controller.engine.environment import environment_for
from controller.errors import ContinuityError
from controller.journal import Journal, ReleaseRecord
from controller.manifest_loader import (
    ConfigError,
    Problem,
    YamlDocument,
    line_of,
    read_yaml,
    validate_document,
)
from controller.models.continuity import ContinuityPlan
from controller.planning.release import agent_item
from controller.planning.snapshots import services_request

PLAN_HINT = "relctl init writes a starter continuity plan; the README lists its fields"

__all__ = ["PLAN_HINT", "Continuity", "Verified", "load_plan"]


def load_plan(path: Path) -> tuple[ContinuityPlan, YamlDocument]:
    """The continuity plan at ``path`` and its document (lines for later errors)."""
    doc = read_yaml(path)
    return validate_document(doc, ContinuityPlan, hint=PLAN_HINT), doc


@dataclass
class Continuity:
    """A continuity plan's shared services, its sites and their data."""

    services: Services
    site: Site
    data: SiteData

    @property
    def plan(self) -> ContinuityPlan:
        return self.services.plan

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
        site = Site(plan, found, env)
        return cls(Services(plan, plan_path, env, journal, progress, doc), site, SiteData(site))

    # -- a release on a site -------------------------------------------------------------

    def deploy(self, record: ReleaseRecord, hosts: list[str], tag: str) -> None:
        """Put ``hosts`` on release ``record`` (its manifest as released)."""
        self.site.deploy(self.services.release_manifest(record), hosts, tag)

    def testinfra(self, record: ReleaseRecord | None, hosts: list[str], tag: str) -> list[str]:
        """Release ``record``'s testinfra checks (or the plan's) on ``hosts``; what failed."""
        manifest = self.services.release_manifest(record) if record is not None else None
        return self.site.testinfra(manifest, hosts, tag)

    def service_items(self, record: ReleaseRecord) -> list[ItemSpec]:
        """The service items of release ``record``'s manifest, as released."""
        return [agent_item(i) for i in self.services.release_manifest(record).items
                if i.kind == "service"]

    def start_service(self, hosts: list[str], label: str) -> str | None:
        """The service started again on ``hosts``: the plan's ``restart`` command, else
        the last good release's service items (their ``start``); None: neither exists."""
        if self.plan.restart:
            self.site.run_command(hosts, self.plan.restart, f"{label}-restart")
            return f"service restarted on {', '.join(hosts)} (the plan's restart command)"
        good = self.services.last_good()
        items = self.service_items(good) if good is not None else []
        if good is None or not items:
            return None
        replies = self.site.agent.services(f"{label}-start",
                                           dict.fromkeys(hosts, services_request(items, True)))
        failed = {h: r.error for h, r in replies.items() if not r.ok}
        if failed:
            raise ContinuityError("cannot start the service on " + "; ".join(
                f"{h}: {e}" for h, e in sorted(failed.items())))
        return (f"{', '.join(i['name'] for i in items)} started on {', '.join(hosts)} "
                f"({good.name}'s service items)")

    def close(self) -> None:
        self.services.close()
