"""What ``relctl serve`` shows, read from the journal: plain data for the pages and JSON.

    team_view(journal, filters)       environments, releases in flight, locks, sign-offs
                                      waiting, drills, replication, history
    release_view(journal, name)       one release: its report's facts and its live grid
    status_view(journal, service, …)  what a service's users may know: no host, no figure

Everything here reads; nothing writes. Host names and figures stay out of ``status_view``
by construction: it returns only texts written here and times.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from controller.engine.continuity.follow import followed_versions
from controller.engine.signoff import read_status
from controller.errors import RelctlError
from controller.journal import ContinuityRecord, Journal, ReleaseRecord, SignoffRequest
from controller.manifest_loader import load_manifest
from controller.models.manifest import Manifest
from controller.reports.release_report import ReleaseFacts, covered_hosts, latency_figure

HISTORY_LIMIT = 50
SCOPE_RELEASES = 20  # releases of a service and environment read for its sites' versions
DIFF_LINES = 200
HOLDER_STATES = {"alive": "holder alive", "unknown": "holder on another machine",
                 "gone": "holder gone: the lock is stale"}


@dataclass(frozen=True)
class Filters:
    """The history's filters (the team view's query string)."""

    service: str | None = None
    environment: str | None = None
    state: str | None = None


@dataclass(frozen=True)
class Grid:
    """A release's host-by-phase grid: each cell the state of the phase on that host."""

    phases: list[str]
    rows: list[tuple[str, str, list[str]]]  # host, host state, one state per phase ("" none)


def grid(facts: ReleaseFacts) -> Grid:
    """The grid of ``facts``: a phase's hosts as it journaled them (as it starts, for a
    phase still running)."""
    hosts = [h.host for h in facts.hosts]
    states: dict[str, str] = {h.host: h.state for h in facts.hosts}
    batches = facts.batch_hosts()
    names = list(dict.fromkeys(p.name for p in facts.phases))
    cells: dict[str, dict[str, str]] = {}
    for phase in facts.phases:  # a later attempt of a phase name overrides an earlier one
        for host in covered_hosts(phase, hosts, batches):
            cells.setdefault(host, {})[phase.name] = phase.state
            if host not in states:
                hosts.append(host)
                states[host] = "-"
    return Grid(names, [(h, states[h], [cells.get(h, {}).get(n, "") for n in names])
                        for h in hosts])


@dataclass(frozen=True)
class InFlight:
    """A release not yet in a final state."""

    record: ReleaseRecord
    grid: Grid
    current: str | None  # the phase running now
    elapsed_s: float
    usual_s: float | None  # how long the service's last good release took
    rollback_ready: str
    gates: list[dict[str, Any]]
    chart: str | None = None  # the Locust gate's latency chart (SVG), once it ran


@dataclass(frozen=True)
class Scope:
    """A service in an environment: what its sites run."""

    service: str
    environment: str
    last_good: ReleaseRecord | None
    latest: ReleaseRecord | None
    backup_versions: dict[str, str]


@dataclass(frozen=True)
class Lock:
    """An environment's lock, its holder and whether the holder still runs."""

    environment: str
    release: str
    holder: str
    state: str
    since: datetime


@dataclass(frozen=True)
class Waiting:
    """A sign-off apply asked for and has not got."""

    request: SignoffRequest
    required: list[str]
    missing: list[str]
    signed: list[str]
    problem: str | None
    diff: list[str]
    diff_against: str | None
    risks: list[str]
    gates: list[str]


@dataclass(frozen=True)
class TeamView:
    """The team view's data."""

    scopes: list[Scope]
    in_flight: list[InFlight]
    locks: list[Lock]
    waiting: list[Waiting]
    drills: list[ContinuityRecord]
    replication: list[dict[str, Any]]
    history: list[ReleaseRecord]
    filters: Filters
    read_at: datetime = field(default_factory=lambda: datetime.now(UTC))


def team_view(journal: Journal, filters: Filters = Filters()) -> TeamView:
    """Everything the team view shows, read now."""
    scopes = [_scope(journal, service, env) for service, env in journal.scopes()]
    locks = [Lock(lk.environment, lk.release, str(lk.holder),
                  HOLDER_STATES[journal.holder_state(lk)], lk.acquired) for lk in journal.locks()]
    history = journal.history(HISTORY_LIMIT * 4 if filters.state else HISTORY_LIMIT,
                              environment=filters.environment, service=filters.service)
    if filters.state:
        history = [r for r in history if r.state == filters.state][:HISTORY_LIMIT]
    return TeamView(scopes, [in_flight(journal, r) for r in journal.unfinished_releases()],
                    locks, waiting_signoffs(journal),
                    journal.continuity_records("drill", limit=10),
                    [_replica(journal, s) for s in scopes], history, filters)


def _scope(journal: Journal, service: str, environment: str) -> Scope:
    recent = journal.history(SCOPE_RELEASES, environment=environment, service=service)
    return Scope(service, environment, journal.last_good_release(service, environment),
                 recent[0] if recent else None, followed_versions(journal, recent))


def _replica(journal: Journal, scope: Scope) -> dict[str, Any]:
    last = journal.last_replication(scope.service, scope.environment)
    age = None
    if last is not None:
        taken = _time(last.detail.get("captured_at")) or last.ended or last.started
        age = max((datetime.now(UTC) - taken).total_seconds(), 0.0)
    return {"service": scope.service, "environment": scope.environment,
            "last_replica": last.id if last else None, "age_s": age,
            "plan": last.detail.get("plan") if last else None}


def _time(text: object) -> datetime | None:
    try:
        moment = datetime.fromisoformat(str(text)) if text else None
    except ValueError:
        return None
    return moment if moment is None or moment.tzinfo else moment.replace(tzinfo=UTC)


def in_flight(journal: Journal, record: ReleaseRecord) -> InFlight:
    """A release in flight: its grid, the phase running, time against the usual."""
    facts = ReleaseFacts.read(journal, record)
    running = [p.name for p in facts.phases if p.state == "running"]
    good = journal.last_good_release(record.service, record.environment)
    usual = ((good.ended - good.started).total_seconds()
             if good is not None and good.ended is not None else None)
    load = facts.load
    chart = (latency_figure(load.figures.get("baseline"), load.figures["candidate"]).svg
             if load is not None and isinstance(load.figures.get("candidate"), dict) else None)
    return InFlight(record, grid(facts), running[-1] if running else None,
                    max((datetime.now(UTC) - record.started).total_seconds(), 0.0), usual,
                    rollback_readiness(journal, facts),
                    [gate_summary(g.kind, g.verdict, g.figures, g.phase) for g in facts.gates],
                    chart)


def rollback_readiness(journal: Journal, facts: ReleaseFacts) -> str:
    """Whether a rollback could restore every host now: the snapshot's state."""
    snapshot = next((p for p in facts.phases if p.name == "snapshot"), None)
    if snapshot is None:
        return "not yet: the snapshot has not started (nothing changed yet)"
    if snapshot.state == "running":
        return "not yet: the snapshot is being taken (nothing changed yet)"
    if snapshot.state != "ok":
        return "NO: the snapshot failed"
    copies = journal.snapshots(facts.record.id)
    verified = [s for s in copies if s.verified and s.pruned is None]
    hosts = sorted({s.host for s in verified})
    return (f"ready: {len(verified)} verified copies on {len(hosts)} hosts"
            if len(verified) == len(copies) else
            f"partly: {len(verified)} of {len(copies)} copies verified")


def gate_summary(kind: str, verdict: str, figures: dict[str, Any],
                 phase: str = "") -> dict[str, Any]:
    """A gate's verdict and headline figures."""
    if phase.startswith("canary:"):
        canary, old = figures.get("candidate") or {}, figures.get("baseline") or {}
        said = (f"{phase}: canary p50 {canary.get('p50_ms')} ms, old p50 "
                f"{old.get('p50_ms')} ms, {canary.get('requests', 0)} and "
                f"{old.get('requests', 0)} requests")
    elif kind == "locust":
        run = figures.get("candidate") or {}
        said = (f"p95 {float(run.get('p95_ms', 0) or 0):.0f} ms, "
                f"{float(run.get('rps', 0) or 0):.1f} rps, "
                f"failures {float(run.get('failure_ratio', 0) or 0):.2%}")
    else:
        said = f"{figures.get('tests', 0)} checks, {figures.get('failures', 0)} failed"
    return {"kind": kind, "verdict": verdict, "figures": said}


# --- sign-offs waiting --------------------------------------------------------------------


def waiting_signoffs(journal: Journal) -> list[Waiting]:
    """The sign-offs apply asked for that are still missing (newest first), with the
    manifest's difference from the last release and its evidence."""
    found = []
    for request in journal.signoff_requests():
        started = journal.find_release(request.release)
        if started is not None and started.started >= request.time:
            continue  # apply went on: the release started after it asked
        found.append(_waiting(journal, request))
    return [w for w in found if w.missing or w.problem]


def _waiting(journal: Journal, request: SignoffRequest) -> Waiting:
    ref = request.manifest
    try:
        manifest = load_manifest(ref.path)
    except RelctlError as error:
        return Waiting(request, [], [], [], f"{ref.path} does not load here: {error.message}",
                       [], None, [], [])
    if manifest.source_sha256 != ref.sha256:
        problem = (f"{ref.path} changed since apply asked (sha256 "
                   f"{(manifest.source_sha256 or '?')[:12]}, asked {ref.sha256[:12]}): "
                   "apply has to be run again")
        return Waiting(request, [], [], [], problem, [], None, [], [])
    required = manifest.signoff.required if manifest.signoff else []
    status = read_status(journal, request.release, required, ref)
    diff, against = manifest_diff(journal, manifest)
    return Waiting(request, required, status.missing, [f"{a.role}: {a.by}"
                                                        for a in status.approvals],
                   None, diff, against, _risks(manifest), _gates(manifest))


def manifest_diff(journal: Journal, manifest: Manifest) -> tuple[list[str], str | None]:
    """The unified diff of ``manifest`` against the last good release's manifest (when
    that file is still on this machine), and which release it is against."""
    good = journal.last_good_release(manifest.service, manifest.environment)
    if good is None or manifest.source_path is None:
        return [], None
    try:
        old = Path(good.manifest_path).read_text(encoding="utf-8").splitlines()
        new = manifest.source_path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return [], f"{good.name} (its manifest {good.manifest_path} is not readable here)"
    lines = list(difflib.unified_diff(old, new, str(good.manifest_path),
                                      str(manifest.source_path), lineterm=""))
    return lines[:DIFF_LINES], good.name


def _risks(manifest: Manifest) -> list[str]:
    declared = [f"{r.title} (likelihood {r.likelihood}, impact {r.impact})"
                for r in manifest.risks]
    return declared + [f"{item.name} is converted in place: a point of no return"
                       for item in manifest.irreversible_items()]


def _gates(manifest: Manifest) -> list[str]:
    gates = []
    if manifest.gates.testinfra:
        gates.append("testinfra checks after every batch")
    locust = manifest.gates.locust
    if locust is not None:
        limits = locust.thresholds
        gates.append(f"Locust {locust.duration_s:g} s: p95 ≤ {limits.p95_ms} ms, failures ≤ "
                     f"{limits.max_failure_ratio}")
    return gates


# --- the status page ----------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """A planned change window."""

    start: datetime
    end: datetime
    now: bool


@dataclass(frozen=True)
class StatusView:
    """What a service's users see: a state, a sentence, planned windows, incidents."""

    service: str
    state: str  # normal | release | drill | failover | degraded
    headline: str
    windows: list[Window]
    incidents: list[dict[str, str]]
    read_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {"service": self.service, "state": self.state, "headline": self.headline,
                "windows": [{"start": w.start.isoformat(), "end": w.end.isoformat(),
                             "now": w.now} for w in self.windows],
                "incidents": self.incidents, "read_at": self.read_at.isoformat()}


HEADLINES = {
    "normal": "All systems normal.",
    "release": "A planned release is in progress: the service may be briefly interrupted.",
    "failover": "We are moving the service to its standby site: it may be briefly "
                "interrupted.",
    "drill": "A planned continuity exercise is in progress: the service may be briefly "
             "interrupted.",
    "degraded": "The service runs from its standby site after an incident.",
}


def status_view(journal: Journal, service: str, manifests: Iterable[Manifest],
                now: datetime | None = None) -> StatusView:
    """The status page of ``service``: planned windows from ``manifests`` (those of the
    service whose window has not ended), a release or failover in progress, the last
    incidents (drills marked as drills). No host name, figure or secret."""
    moment = now or datetime.now(UTC)
    windows = sorted({(m.window.start, m.window.end) for m in manifests
                      if m.service == service and m.window is not None
                      and m.window.end > moment})
    records = journal.continuity_records(service=service, limit=20)
    switching = [r for r in records if r.state == "running" and r.kind in
                 ("failover", "failback", "drill")]
    releasing = [r for r in journal.unfinished_releases() if r.service == service]
    site = next((r for r in records if r.kind in ("failover", "failback")
                 and r.state == "ok"), None)
    if any(r.kind != "drill" for r in switching):
        state = "failover"
    elif switching:
        state = "drill"
    elif releasing:
        state = "release"
    elif site is not None and site.kind == "failover":
        state = "degraded"
    else:
        state = "normal"
    incidents = [{"kind": "drill (planned exercise)" if r.kind == "drill" else r.kind,
                  "started": r.started.isoformat(),
                  "ended": r.ended.isoformat() if r.ended else "",
                  "outcome": {"ok": "service restored", "failed": "see the team",
                              "running": "in progress"}.get(r.state, r.state)}
                 for r in records if r.kind in ("failover", "failback", "drill")][:5]
    return StatusView(service, state, HEADLINES[state],
                      [Window(s, e, s <= moment < e) for s, e in windows], incidents, moment)
