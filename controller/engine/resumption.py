"""Where a release whose controller died stopped, and whether it may go on from there.

``relctl resume`` reads this to say where the release stopped before rolling it back;
``relctl resume --forward`` continues from ``StopPoint.first_batch`` when
``forward_refusal`` finds no reason against it.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.engine.server_data import dump_entry
from controller.errors import ExitCode, RelctlError
from controller.journal import Journal, PhaseRecord, ReleaseRecord
from controller.models.gates import LoadStats
from controller.models.manifest import Manifest
from controller.planning.release import ReleasePlan


class ResumeRefusedError(RelctlError):
    """``resume --forward`` cannot go on from where the release stopped: nothing touched."""

    exit_code = ExitCode.INVALID_INPUT


@dataclass(frozen=True)
class StopPoint:
    """What the journal says about a release that did not finish."""

    phase: PhaseRecord | None  # the phase that was running (else the last one begun)
    hosts: dict[str, str]  # host -> its last recorded state
    first_batch: int  # the first batch (1 = canary) with a host not verified
    baseline: LoadStats | None  # the baseline load figures, when they were recorded
    snapshot_taken: bool  # the snapshot phase ended ok

    def describe(self, record: ReleaseRecord) -> str:
        """One line for people: the release, its state, the phase and the hosts."""
        if self.phase is None:
            phase = "before its first phase"
        else:
            how = "running" if self.phase.state == "running" else "the last one begun"
            phase = f"in phase {self.phase.name} ({how})"
        hosts = ", ".join(f"{h} {s}" for h, s in sorted(self.hosts.items())) or "no host touched"
        return f"{record.name} stopped {phase}, release state {record.state}; hosts: {hosts}"


def where_stopped(journal: Journal, record: ReleaseRecord, plan: ReleasePlan) -> StopPoint:
    """Read the phases, host states and baseline figures of ``record``."""
    phases = journal.phases(record.id)
    running = [p for p in phases if p.state == "running"]
    phase = running[-1] if running else (phases[-1] if phases else None)
    hosts = {h.host: str(h.state) for h in journal.host_states(record.id)}
    first = next((n for n, batch in enumerate(plan.batches, start=1)
                  if any(hosts.get(h) != "verified" for h in batch)), len(plan.batches) + 1)
    figures = next((p.detail.get("figures") for p in phases
                    if p.name == "baseline" and p.state == "ok"), None)
    taken = any(p.name == "snapshot" and p.state == "ok" for p in phases)
    return StopPoint(phase, hosts, first, _load_stats(figures), taken)


def forward_refusal(journal: Journal, record: ReleaseRecord, manifest: Manifest,
                    plan: ReleasePlan, stop: StopPoint) -> str | None:
    """Why the release cannot go on forward, or None when it can."""
    if manifest.source_sha256 != record.manifest_sha256:
        return (f"the manifest {record.manifest_path} changed since the release started "
                f"(sha256 {(manifest.source_sha256 or '?')[:12]}, was "
                f"{record.manifest_sha256[:12]})")
    if record.state == "rolling_back":
        return "it stopped while rolling back: the rollback has to finish"
    if not stop.snapshot_taken:
        return "the snapshot is incomplete (its phase never ended ok)"
    wanted = {str(item["name"]) for item in plan.agent_items}
    for host in plan.hosts:
        taken = {s.item for s in journal.snapshots(record.id, host) if s.verified}
        if not wanted <= taken:
            missing = ", ".join(sorted(wanted - taken))
            return f"the snapshot is incomplete: {host} has no verified copy of {missing}"
    undumped = [item.name for item in plan.server_data
                if dump_entry(journal, record.id, item) is None]
    if undumped:
        return f"the snapshot is incomplete: no verified dump of {', '.join(undumped)}"
    if manifest.gates.locust is not None and stop.baseline is None:
        return "no baseline load figures were recorded, so the load gate could not judge"
    return None


def close_stale_phases(journal: Journal, release_id: int) -> list[str]:
    """End the phases a dead controller left running, as failed; returns their names."""
    stale = [p for p in journal.phases(release_id) if p.state == "running"]
    for phase in stale:
        journal.end_phase(phase.id, "failed",
                          {**phase.detail, "error": "the controller died in this phase"})
    return [p.name for p in stale]


def _load_stats(figures: object) -> LoadStats | None:
    if not isinstance(figures, dict):
        return None
    try:
        return LoadStats(int(figures["requests"]), int(figures["failures"]),
                         float(figures["p50_ms"]), float(figures["p95_ms"]),
                         float(figures["p99_ms"]), float(figures["rps"]))
    except (KeyError, TypeError, ValueError):
        return None
