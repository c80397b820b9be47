"""The risk register of an implementation plan: the manifest's declared risks plus those
the plan itself reveals (no way back, no backup site, one host, no load check, no time).
Pure functions of the data ``controller.planning.runbook`` gathers."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Literal

from controller.models.manifest import Level, Manifest

if TYPE_CHECKING:
    from controller.planning.runbook import Estimate, Fleet, History, Step

RiskSource = Literal["declared", "detected"]
LOOSE_P95_FACTOR = 3.0  # a p95 threshold this many times the usual p95 catches nothing
MINUTE = 60.0


@dataclass(frozen=True)
class PlanRisk:
    """A line of the risk register."""

    title: str
    likelihood: Level
    impact: Level
    mitigation: str
    source: RiskSource





def declared_risks(manifest: Manifest) -> list[PlanRisk]:
    """The manifest's own risk register."""
    return [PlanRisk(r.title, r.likelihood, r.impact, r.mitigation, "declared")
            for r in manifest.risks]


def detected_risks(manifest: Manifest, fleet: Fleet, history: History, steps: list[Step],
                   rollback: Estimate) -> list[PlanRisk]:
    """Risks the plan reveals: no way back, no backup site, no load check, no time."""
    return [*_irreversible(manifest), *_no_backup(fleet), *_behind(manifest, fleet, history),
            *_single_host(fleet), *_load_gate(manifest, history),
            *_window(manifest, steps, rollback)]


def _detected(title: str, likelihood: Level, impact: Level, mitigation: str) -> PlanRisk:
    return PlanRisk(title, likelihood, impact, mitigation, "detected")


def _irreversible(manifest: Manifest) -> list[PlanRisk]:
    return [_detected(f"{item.name} ({item.path}) is converted in place: a failure after the "
                      "canary's apply cannot be rolled back (point of no return)",
                      "medium", "high",
                      "Canary first; snapshot before the apply for a manual restore; a "
                      "roll-forward fix ready; the board signs off the point of no return")
            for item in manifest.irreversible_items()]


def _no_backup(fleet: Fleet) -> list[PlanRisk]:
    if fleet.backup_hosts:
        return []
    return [_detected("No backup hosts in the inventory (no app_backup or *backup* group "
                      "with hosts): a failed primary site cannot fail over", "low", "high",
                      "Add hosts to app_backup, or agree the restore time from snapshots")]


def _behind(manifest: Manifest, fleet: Fleet, history: History) -> list[PlanRisk]:
    backups = [h for h in fleet.backup_hosts if h not in fleet.hosts]
    if not backups or history.backup.plan is not None:
        return []
    known = history.backup.versions
    runs = ", ".join(f"{h} {known.get(h, 'unknown')}" for h in backups)
    applies = [p.seconds for p in history.phases if p.name.startswith("apply:")]
    cost = (f"about {statistics.median(applies):.0f} s (the median apply phase of past "
            "releases)" if applies else "that deploy")
    return [_detected(f"The backup site does not follow this release ({runs}): after it, a "
                      f"failover first deploys {manifest.version} there, adding {cost} to "
                      "the RTO", "medium", "medium",
                      "List this manifest under the continuity plan's releases: (apply then "
                      "brings the backup hosts to it), or deploy the backups after the release")]


def _single_host(fleet: Fleet) -> list[PlanRisk]:
    if len(fleet.hosts) != 1:
        return []
    return [_detected(f"A single target host ({fleet.hosts[0]}): the canary is the whole "
                      "fleet, every user meets the new release at once", "medium", "medium",
                      "Add a host behind the load balancer, or announce the full interruption")]


def _load_gate(manifest: Manifest, history: History) -> list[PlanRisk]:
    gate = manifest.gates.locust
    if gate is None:
        return [_detected("No Locust gate: performance after the install is not verified",
                          "medium", "medium",
                          "Add gates.locust with p95_ms and max_failure_ratio thresholds")]
    threshold, past = gate.thresholds.p95_ms, history.candidate_p95_ms
    if threshold is None or not past:
        return []
    usual = statistics.median(past)
    if usual <= 0 or threshold <= LOOSE_P95_FACTOR * usual:
        return []
    return [_detected(f"Locust p95 threshold {threshold:g} ms is {threshold / usual:.1f}x the "
                      f"p95 of past passing releases ({usual:g} ms, n={len(past)}): a "
                      "slowdown would pass the gate", "medium", "medium",
                      f"Tighten p95_ms towards {math.ceil(usual * 1.5)} ms, or set "
                      "p95_vs_baseline")]


def _window(manifest: Manifest, steps: list[Step], rollback: Estimate) -> list[PlanRisk]:
    window, start, end = manifest.window, steps[0].start, steps[-1].end
    if window is None:
        return [_detected("No change window: the change is not scheduled with the board",
                          "medium", "medium",
                          "Declare window: in the manifest, agreed with the change board")]
    planned, allowed = end - start, window.end - window.start
    if allowed < planned:
        return [_detected(f"The change window ({format_span(allowed)}) is shorter than the "
                          f"runbook ({format_span(planned)})", "high", "high",
                          "Widen the window, or split the release")]
    if start < window.start or end > window.end:
        return [_detected("The runbook runs outside the change window", "high", "medium",
                          "Start at the window's start (drop --start), or move the window")]
    needed = timedelta(minutes=rollback.minutes)
    if end + needed > window.end:
        return [_detected(f"No room for a rollback ({format_span(needed)}) before the window "
                          "closes", "medium", "high",
                          "Start earlier or widen the window by the rollback time")]
    return []


def format_span(delta: timedelta) -> str:
    """A duration for people: ``45 min``, ``1 h 05 min``."""
    minutes = int(delta.total_seconds() // MINUTE)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"
