"""The implementation plan a change board signs, computed from data alone.

    build_plan(manifest, fleet, history, now=...) -> ImplementationPlan
    ├── item_changes    what changes on every host (artifact X → Y, as the journal knows X)
    ├── batches         canary first, as ``relctl apply`` will roll them
    ├── steps           the cut-over runbook: contiguous, clock times, owners, estimates
    ├── sites           what each site's hosts run before and after (the backup site follows
    │                   when a continuity plan lists the manifest)
    ├── rollback        how each item is restored and from which snapshot; points of no return
    └── risks           declared risks plus those the plan itself reveals (risks.py)

Nothing here reads a file, the journal or the inventory: the caller gathers ``Fleet`` and
``History`` and passes them in, so every rule is tested as data.
"""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from controller.models.durations import format_duration
from controller.models.manifest import (
    ArtifactItem,
    ConfigItem,
    DataItem,
    LocustGate,
    Manifest,
    PackageItem,
    ServiceItem,
)
from controller.planning.release import ReleasePlan, plan_release
from controller.planning.risks import PlanRisk, declared_risks, detected_risks
from controller.planning.rollback import RollbackItem, rollback_items

MINUTE = 60.0
DEFAULT_SECONDS: dict[str, float] = {
    "notice": 15 * MINUTE, "lock": 1 * MINUTE, "snapshot": 5 * MINUTE, "apply": 10 * MINUTE,
    "gate:testinfra": 3 * MINUTE, "signoff": 30 * MINUTE, "close": 15 * MINUTE,
    "warranty": 0.0, "rollback": 10 * MINUTE, "gate:testinfra:restored": 3 * MINUTE,
}
"""Step durations when the journal has no past release of the service to go by."""
LOCUST_OVERHEAD_S = 60.0  # start-up, ramp-up and report around the measured run
WARRANTY_DAYS = 7


# --- inputs gathered by the caller ------------------------------------------------------


@dataclass(frozen=True)
class Fleet:
    """The inventory as the plan needs it: the targets and the backup site."""

    hosts: list[str]
    backup_hosts: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PastPhase:
    """How long one successful phase of a past release of the same service took."""

    name: str
    seconds: float


@dataclass(frozen=True)
class BackupSite:
    """What the journal knows of the backup site: the version each backup host was last
    brought to by a release's follow, and the continuity plan that makes it follow this
    release (None: no plan lists the manifest under ``releases``)."""

    versions: dict[str, str] = field(default_factory=dict)
    plan: str | None = None


@dataclass(frozen=True)
class History:
    """What the journal knows about past releases of the service."""

    phases: list[PastPhase] = field(default_factory=list)
    candidate_p95_ms: list[float] = field(default_factory=list)
    """p95 of past Locust candidate runs that passed."""
    versions: dict[str, str] = field(default_factory=dict)
    """host -> the version the journal last saw deployed there."""
    backup: BackupSite = field(default_factory=BackupSite)

    def durations(self, name: str) -> list[float]:
        """Seconds of past phases called ``name``, else of its family (``apply:batch*``)."""
        exact = [p.seconds for p in self.phases if p.name == name]
        return exact or [p.seconds for p in self.phases if _family(p.name) == _family(name)]


def _family(phase: str) -> str:
    """``apply:batch3`` -> ``apply:batch``; ``gate:testinfra:restored-1.1.0`` -> ``...restored``."""
    return re.sub(r"(batch)\d+$|(restored)-.*$", r"\1\2", phase)


# --- the plan ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """A duration and where it comes from: ``history (n=3)`` or ``default``."""

    seconds: float
    basis: str

    @property
    def minutes(self) -> int:
        """Whole minutes, rounded up (a plan is read on a clock)."""
        return math.ceil(self.seconds / MINUTE)


def estimate(samples: list[float], default: float) -> Estimate:
    """The median of past durations, else ``default``."""
    return (Estimate(statistics.median(samples), f"history (n={len(samples)})") if samples
            else Estimate(default, "default"))


def combined(*parts: Estimate) -> Estimate:
    """Several estimates run one after the other."""
    bases = dict.fromkeys(p.basis for p in parts)
    return Estimate(sum(p.seconds for p in parts), " + ".join(bases))


@dataclass(frozen=True)
class ItemChange:
    """One row of the configuration-item table."""

    host: str
    item: str
    kind: str
    change: str
    path: str


@dataclass(frozen=True)
class SiteHost:
    """What one host of a site runs now (as the journal knows it) and once the release is
    done: the primaries get the release, the backup site only when it follows."""

    site: str
    host: str
    now: str | None
    after: str | None


@dataclass(frozen=True)
class Batch:
    """Hosts changed together; the first is the canary."""

    label: str
    hosts: list[str]


@dataclass(frozen=True)
class Step:
    """One line of the cut-over runbook, ticked off by its owner."""

    number: int
    key: str
    title: str
    owner: str
    start: datetime
    end: datetime
    basis: str

    @property
    def minutes(self) -> int:
        return int((self.end - self.start).total_seconds() // MINUTE)


@dataclass(frozen=True)
class ImplementationPlan:
    """Everything the change board reads before it signs."""

    release: str
    version: str
    service: str
    environment: str
    targets: str
    release_manager: str
    approvers: list[str]
    start_basis: str
    window_start: datetime | None
    window_end: datetime | None
    hosts: list[str]
    backup_hosts: list[str]
    sites: list[SiteHost]
    backup_plan: str | None
    items: list[ItemChange]
    batches: list[Batch]
    steps: list[Step]
    rollback: list[RollbackItem]
    rollback_estimate: Estimate
    risks: list[PlanRisk]
    snapshot_store: str
    warranty_days: int

    @property
    def start(self) -> datetime:
        return self.steps[0].start

    @property
    def end(self) -> datetime:
        return self.steps[-1].end

    @property
    def total_minutes(self) -> int:
        return sum(step.minutes for step in self.steps)

    @property
    def points_of_no_return(self) -> list[str]:
        return [r.item for r in self.rollback if r.point_of_no_return]


def build_plan(manifest: Manifest, fleet: Fleet, history: History, *, now: datetime,
               start: datetime | None = None, snapshot_store: str = "STATE_DIR/snapshots",
               warranty_days: int = WARRANTY_DAYS) -> ImplementationPlan:
    """The implementation plan of ``manifest`` on ``fleet``, timed from ``history``.

    The runbook starts at ``start``, else the change window's start, else ``now`` (next
    whole minute); ``now`` is a parameter so that the plan stays a pure function.
    """
    release = plan_release(manifest, fleet.hosts)
    begin, basis = _start(manifest, start, now)
    steps = schedule(_runbook(manifest, release, history, snapshot_store, warranty_days), begin)
    restore = combined(*(estimate(history.durations(key), DEFAULT_SECONDS[key])
                         for key in ("rollback", "gate:testinfra:restored")))
    window = manifest.window
    return ImplementationPlan(
        release=manifest.release, version=manifest.version, service=manifest.service,
        environment=manifest.environment, targets=manifest.targets,
        release_manager=manifest.owners.release_manager, approvers=manifest.owners.approvers,
        start_basis=basis, window_start=window.start if window else None,
        window_end=window.end if window else None, hosts=release.hosts,
        backup_hosts=fleet.backup_hosts, sites=site_hosts(manifest, release.hosts, fleet, history),
        backup_plan=history.backup.plan,
        items=item_changes(manifest, release.hosts, history.versions),
        batches=[Batch(batch_label(n), hosts) for n, hosts in enumerate(release.batches, 1)],
        steps=steps, rollback=rollback_items(manifest, snapshot_store, history.versions),
        rollback_estimate=restore,
        risks=[*declared_risks(manifest),
               *detected_risks(manifest, fleet, history, steps, restore)],
        snapshot_store=snapshot_store, warranty_days=warranty_days,
    )


def site_hosts(manifest: Manifest, hosts: list[str], fleet: Fleet,
               history: History) -> list[SiteHost]:
    """Each site's hosts with their version now and after the release."""
    known = history.backup.versions
    follows = history.backup.plan is not None
    return [*(SiteHost("primary", h, history.versions.get(h), manifest.version) for h in hosts),
            *(SiteHost("backup", h, known.get(h), manifest.version if follows else known.get(h))
              for h in fleet.backup_hosts if h not in hosts)]


def _start(manifest: Manifest, start: datetime | None, now: datetime) -> tuple[datetime, str]:
    if start is not None:
        return start, "given start"
    if manifest.window is not None:
        return manifest.window.start, "change window start"
    rounded = now.replace(second=0, microsecond=0)
    return (rounded if rounded == now else rounded + timedelta(minutes=1)), "now"


def batch_label(number: int) -> str:
    """The batch's name in the journal's phases: ``canary``, ``batch2``, ``batch3``..."""
    return "canary" if number == 1 else f"batch{number}"


# --- configuration items ----------------------------------------------------------------


def item_changes(manifest: Manifest, hosts: list[str],
                 versions: dict[str, str]) -> list[ItemChange]:
    """What the release does to every item on every host."""
    return [ItemChange(host, item.name, item.kind, *describe_change(item, manifest.version,
                                                                    versions.get(host)))
            for host in hosts for item in manifest.items]


def describe_change(item: ConfigItem, version: str, current: str | None) -> tuple[str, str]:
    """What happens to ``item`` and where, in a board member's words."""
    if isinstance(item, ArtifactItem):
        return (f"version {current or 'unknown'} → {version}",
                f"{item.current_link} → {item.release_dir(version)}")
    if isinstance(item, PackageItem):
        return f"{item.manager} package pinned to {item.version}", item.venv or "system (apt)"
    if isinstance(item, ServiceItem):
        return "stopped, then started on the new release", item.check or item.start
    if isinstance(item, DataItem):
        if not item.reversible:
            return "converted in place: POINT OF NO RETURN", item.location
        if item.conversion is not None:
            return f"converted by {item.conversion.name}", item.location
        return "kept (snapshotted before the apply)", item.location
    return "as the playbooks write it (snapshotted before the apply)", item.path


# --- the runbook ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Spec:
    key: str
    title: str
    owner: str
    estimate: Estimate


def schedule(specs: list[_Spec], start: datetime) -> list[Step]:
    """Lay the steps end to end from ``start``: each begins when the previous one ends."""
    steps: list[Step] = []
    clock = start
    for number, spec in enumerate(specs, start=1):
        end = clock + timedelta(minutes=spec.estimate.minutes)
        steps.append(Step(number, spec.key, spec.title, spec.owner, clock, end,
                          spec.estimate.basis))
        clock = end
    return steps


def _runbook(manifest: Manifest, release: ReleasePlan, history: History, store: str,
             warranty_days: int) -> list[_Spec]:
    manager = manifest.owners.release_manager
    locust = manifest.gates.locust

    def fixed(key: str, title: str, owner: str = manager) -> _Spec:
        return _Spec(key, title, owner, estimate([], DEFAULT_SECONDS[key]))

    specs = [
        fixed("notice", f"Notice to users and the service desk: {manifest.service} in "
                        f"{manifest.environment} is interrupted for the change"),
        fixed("lock", f"Start `relctl apply` of {manifest.release}: it takes the "
                      f"{manifest.environment} lock"),
    ]
    if locust is not None:
        specs.append(_load_spec("baseline", "Locust baseline through the load balancer",
                                locust, manager, history))
    databases = (f", and {len(release.server_data)} database(s) once from the controller "
                 "(pg_dump)" if release.server_data else "")
    specs.append(_Spec("snapshot", f"Snapshot {len(release.agent_items)} items on "
                                   f"{len(release.hosts)} hosts{databases} into "
                                   f"`{store}/<release-id>/` (sha256 verified)", manager,
                       estimate(history.durations("snapshot"), DEFAULT_SECONDS["snapshot"])))
    for number, hosts in enumerate(release.batches, start=1):
        specs.append(_batch_spec(manifest, release, number, hosts, history))
        if number == 1 and manifest.strategy.analysis is not None and len(release.batches) > 1:
            specs.append(_analysis_spec(manifest, hosts, history))
    if locust is not None:
        specs.append(_load_spec("gate:locust", "Locust candidate through the load balancer",
                                locust, manager, history,
                                f"; passes when {load_criteria(locust)}"))
    approvers = ", ".join(manifest.owners.approvers) or manager
    return [*specs,
            fixed("signoff", "Acceptance: reconcile the gate results with the acceptance "
                             "criteria; sign off", approvers),
            fixed("close", "Close: lock released, change closed, users and service desk "
                           "notified"),
            fixed("warranty", f"Warranty period starts ({warranty_days} days): monitoring "
                              "watches the service; the snapshot is kept")]


def _load_spec(key: str, title: str, gate: LocustGate, owner: str, history: History,
               criteria: str = "") -> _Spec:
    default = gate.duration_s + LOCUST_OVERHEAD_S
    remote = gate.worker_hosts
    source = (f", from {remote.per_host} worker(s) on each host of {remote.hosts}"
              if remote is not None else "")
    return _Spec(key, f"{title}: {gate.users} users for {gate.duration_s:g} s{source}"
                 f"{criteria}", owner, estimate(history.durations(key), default))


def _batch_spec(manifest: Manifest, release: ReleasePlan, number: int, hosts: list[str],
                history: History) -> _Spec:
    label = batch_label(number)
    parts = [estimate(history.durations(f"apply:{label}"), DEFAULT_SECONDS["apply"])]
    title = f"Apply to {label} ({', '.join(hosts)})"
    if manifest.gates.testinfra:
        parts.append(estimate(history.durations(f"gate:testinfra:{label}"),
                              DEFAULT_SECONDS["gate:testinfra"]))
        title += " and run the testinfra gate"
    if number == 1 and release.irreversible:
        title += f"; converts {', '.join(release.irreversible)}: POINT OF NO RETURN"
    return _Spec(f"apply:{label}", title, manifest.owners.release_manager, combined(*parts))


def _analysis_spec(manifest: Manifest, canary: list[str], history: History) -> _Spec:
    analysis = manifest.strategy.analysis
    assert analysis is not None
    steps = ", then ".join(f"{s.weight} % for {s.duration_s:g} s" for s in analysis.steps)
    default = sum(s.duration_s for s in analysis.steps) + LOCUST_OVERHEAD_S
    against = "the hosts still on the old release"
    if analysis.compare == "window-before":
        against = (f"the old release's {analysis.steps[0].duration_s:g} s window taken just "
                   "before the canary's change (the canary then takes all the traffic)")
        default += analysis.steps[0].duration_s + LOCUST_OVERHEAD_S
    undecided = ("fails" if analysis.on_inconclusive == "fail" else
                 f"waits up to {format_duration(analysis.on_inconclusive.wait)} for a "
                 f"{analysis.on_inconclusive.signoff} sign-off")
    return _Spec("analysis:canary", f"Canary analysis of {', '.join(canary)} under load "
                 f"against {against}: {steps}; each step judged "
                 f"(Mann-Whitney U, effect ≥ {analysis.effect:g} and median +"
                 f"{analysis.slack_ms:g} ms fail; ≥ {analysis.min_samples} samples) before "
                 f"the next; still inconclusive after one extension it {undecided}; a "
                 "failure rolls back the canary alone",
                 manifest.owners.release_manager,
                 estimate(history.durations("analysis:canary"), default))


def load_criteria(gate: LocustGate) -> str:
    """The Locust thresholds in one line: ``p95 ≤ 300 ms, failures ≤ 1%, ...``."""
    t = gate.thresholds
    parts = [f"p95 ≤ {t.p95_ms:g} ms" if t.p95_ms is not None else "",
             f"failures ≤ {t.max_failure_ratio:.1%}" if t.max_failure_ratio is not None else "",
             f"≥ {t.min_rps:g} rps" if t.min_rps is not None else "",
             f"p95 ≤ {t.p95_vs_baseline:g}x baseline" if t.p95_vs_baseline is not None else "",
             f"≥ {t.min_requests} requests"]
    return ", ".join(p for p in parts if p)


# --- rollback ---------------------------------------------------------------------------
