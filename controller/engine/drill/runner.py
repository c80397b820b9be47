"""A DR drill: a real fault under real load, measured against the plan's targets.

    allowed? (plan says drills: allowed; production needs --yes-production)
    -> faults planned (refused if the inventory offers no way to inject them)
    -> healthy? -> replicate -> Locust through the LB + relctl's probe (every 50 ms)
    -> warm-up -> faults journaled, then injected -> detected -> recovered -> settle
    -> load stopped -> faults undone (and failback) -> RTO, RPO, failed requests judged
    per critical function -> reports (Markdown, JSON, JUnit, HTML) and the DR plan
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from controller.adapters.locust import LoadRun, start_load, stop_load
from controller.engine.continuity import Continuity, DrillReport, Outcome, ReplicaRecord
from controller.engine.continuity.preflight import Check, Preflight
from controller.engine.drill.faults import DrillSite, Fault
from controller.engine.drill.probe import Moments, Probe
from controller.engine.drill.scenarios import Scenario, scenario
from controller.engine.lab import Lab
from controller.errors import ContinuityError, ExitCode, InputError, RelctlError
from controller.journal import ContinuityRecord
from controller.models.continuity import DrillSettings
from controller.planning import continuity as plan_logic
from controller.planning.continuity import Timeline
from controller.reports import continuity_md
from controller.reports.drill_html import drill_html
from controller.reports.drill_junit import drill_junit_xml

PRODUCTION = ("production", "prod", "prd")
RESTARTED = {"restart", "lab-up"}  # undo actions after which the service must start again


def site_for(ctx: Continuity, lab: Lab) -> DrillSite:
    """The drill's site: relctl's lab when the plan's inventory is the lab's, else the
    inventory as it is (faults through Ansible only)."""
    state = lab.load() if lab.layout.inventory.exists() else None
    if state is not None and ctx.services.env.inventory.resolve() == lab.layout.inventory.resolve():
        return DrillSite(ctx, lab, state)
    return DrillSite(ctx)


@dataclass(frozen=True)
class DrillPlan:
    """What a drill will do, before it touches anything (``--dry-run`` prints it)."""

    scenario: Scenario
    site: DrillSite
    settings: DrillSettings
    faults: list[Fault]

    def preflight(self, *, replicate: bool) -> Preflight:
        """Every check before the first fault (``PreflightError``, exit 2, when one
        fails): the primaries serve, the LB, both sites reachable, versions readable,
        the deploy play matches the backups, each fault has a way back; ``replicate``:
        the drill's replication, now."""
        ctx = self.site.ctx
        restart = sorted({f.host for f in self.faults if RESTARTED & set(f.undo)})
        flight = Preflight(ctx, [*ctx.site.primaries, *ctx.site.backups], restart,
                           serving=ctx.site.primaries)
        flight.check(f"the {self.scenario.name} drill", replicate=replicate)
        return flight

    def as_dict(self) -> dict[str, Any]:
        ctx = self.site.ctx
        return {"scenario": self.scenario.name, "fault": self.scenario.summary,
                "mode": self.site.mode, "service": ctx.plan.service,
                "environment": ctx.plan.environment, "inventory": str(ctx.services.env.inventory),
                "primaries": ctx.site.primaries, "backups": ctx.site.backups,
                "load": {"url": ctx.site.lb_url, "users": self.settings.users,
                         "locustfile": str(self.settings.locustfile)},
                "faults": [f.as_dict() for f in self.faults]}


def plan_drill(ctx: Continuity, lab: Lab, name: str, *, yes_production: bool = False
               ) -> DrillPlan:
    """Check that the drill may run and can inject its fault here; touches nothing."""
    chosen = scenario(name)
    plan, refuse = ctx.plan, ctx.services.refuse
    if plan.drills != "allowed":
        raise refuse(("drills",), "drills are not allowed by this plan: they inject real "
                     "faults into its hosts", hint="add `drills: allowed` to a plan whose "
                     "hosts may be broken on purpose (a staging inventory)")
    if plan.environment.lower() in PRODUCTION and not yes_production:
        raise refuse(("environment",), f"{plan.environment!r} is production: a drill there "
                     "needs --yes-production")
    if plan.drill is None:
        raise refuse(("drill",), "the continuity plan has no drill: section",
                     hint="add drill: {locustfile: ...}")
    site = site_for(ctx, lab)
    return DrillPlan(chosen, site, plan.drill, chosen.faults(site, plan.drill))


@dataclass
class Drill:
    """One drill of one scenario against the plan's hosts."""

    plan: DrillPlan
    restore: bool = True
    progress: Callable[[str], None] = lambda _m: None
    timeline: Timeline = field(default_factory=Timeline)
    problems: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    failover_figures: dict[str, Any] = field(default_factory=dict)
    failover_replica_at: float | None = None  # when the data the failover restored was shipped
    probe_samples: list[tuple[float, bool, str]] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)  # the preflight's
    versions: dict[str, str] = field(default_factory=dict)  # host -> version, before it
    restored: bool = False  # every fault undone (and the failback done)
    record: int | None = None  # the drill's journal record, once begun
    quiet: bool = False  # between the fault and the recovery: the timeline waits (no write)

    @property
    def ctx(self) -> Continuity:
        return self.plan.site.ctx

    def run(self) -> Outcome:
        """Run the drill; returns its outcome (exit 0 targets met, 10 missed, 9 failed;
        exit 2 when its preflight fails, nothing touched)."""
        ctx, plan = self.ctx, self.ctx.plan
        try:
            flight = self.plan.preflight(replicate=True)
        except RelctlError:
            ctx.close()
            raise
        self.checks, self.versions = flight.checks, flight.found
        cold = [h for h in ctx.site.backups if h not in flight.answering]
        if cold:
            self.progress(f"backup site cold ({', '.join(cold)} not answering): a failover "
                          "will deploy the last good release there first")
        me = psutil.Process(os.getpid())
        record = ctx.services.begin("drill", {
            "scenario": self.plan.scenario.name, "mode": self.plan.site.mode,
            "faults": [f.as_dict() for f in self.plan.faults], "faults_state": "planned",
            "controller": {"pid": me.pid, "started": me.create_time()}})
        self.record = record
        wall_start = datetime.now(UTC)
        self.started = time.monotonic()
        self._mark(f"drill {record} ({self.plan.scenario.name}, {self.plan.site.mode}) "
                   "started")
        moments = Moments({f.name: None for f in plan.functions})
        for check in self.checks:
            self._mark(f"preflight {check.name}: {check.detail}")
        try:
            measures = self._under_load(record, moments, flight.replica)
            if self.restore:
                self._undo(record)
        finally:
            ctx.close()  # the ssh masters of the replication and checks
        return self._finish(record, wall_start, moments, measures)

    def _under_load(self, record: int, moments: Moments, replicated: ContinuityRecord | None
                    ) -> dict[str, Any]:
        """Start the load, inject the fault, detect it, recover; measure."""
        ctx, settings, chosen = self.ctx, self.plan.settings, self.plan.scenario
        load_run = LoadRun(settings.locustfile, ctx.site.lb_url, settings.users,
                           settings.spawn_rate, 3600, ctx.services.env.state_dir / "drills" /
                           str(record), "load")
        probe, locust, measures = Probe(ctx), None, dict[str, Any]()
        try:
            if replicated is not None:
                replica = ReplicaRecord.of(replicated)
                if replica.captured_at is not None:
                    moments.replica_wall = replica.captured_at.timestamp()
            locust = start_load(load_run)
            probe.start()
            self._mark(f"load started: Locust, {settings.users} users, through {ctx.site.lb_url}")
            time.sleep(settings.warmup)
            ctx.services.journal.update_continuity(record, {"faults_state": "injected"})
            self.quiet = True  # no journal write of ours inside what is measured
            moments.fault, moments.fault_wall = time.monotonic(), time.time()
            self._mark("fault injected: " + chosen.inject(self.plan.site, self.plan.faults,
                                                          f"drill{record}"))
            moments.detected = chosen.detect(self.plan.site, settings)
            self._mark("fault detected by relctl's polls" if moments.detected
                       else "fault NOT detected by relctl's polls")
            recovery = chosen.recover(self.plan.site, settings, moments.fault,
                                      moments.detected)
            moments.switched = recovery.switched
            moments.record_recovery(recovery.verified_at)
            if recovery.failover is not None:
                self._absorb(recovery.failover, recovery.switched)
                restored = self.failover_replica_at
                if restored is not None:  # RPO counts from the data the failover restored
                    moments.replica_wall = restored
            self.quiet = False
            self._mark("every critical function verified through the LB"
                       if moments.recovered else "some critical functions did NOT recover")
            time.sleep(settings.settle)
        except RelctlError as error:
            self.problems.append(error.message)
            self.quiet = False
            self._mark(f"drill step failed: {error.message}")
        finally:
            probe.stop()
            if locust is not None:
                try:
                    stats = stop_load(load_run, locust)
                    measures.update(load_requests=stats.requests, load_failures=stats.failures,
                                    load_p95_ms=stats.p95_ms, **stats.split())
                except RelctlError as error:
                    self.problems.append(error.message)
            self._mark("load stopped")
        self.probe_samples = probe.samples
        measures.update(probe.figures(moments.fault or self.started))
        measures["served_by_after"] = probe.served_by_after(moments.recovered or time.monotonic())
        measures.update(moments.figures(chosen.data_at_risk))
        measures.update(self.failover_figures)
        return measures

    def _absorb(self, outcome: Outcome, switched: float | None) -> None:
        """A failover's figures and timeline, inside the drill's."""
        figures = outcome.figures.as_dict() if outcome.figures else {}
        self.failover_figures = {"failover_id": outcome.record_id, **{
            k: figures.get(k) for k in ("preflight_s", "switch_s", "verify_s")}}
        captured = figures.get("replica_captured_at")
        self.failover_replica_at = (datetime.fromisoformat(captured).timestamp()
                                    if captured else None)
        begun = (switched or time.monotonic()) - float(figures.get("preflight_s") or 0)
        self.timeline.events += [(round(begun - self.started + at, 3), f"failover: {what}")
                                 for at, what in outcome.timeline]
        self.problems += outcome.warnings

    def _undo(self, record: int) -> None:
        """Undo the drill's faults, then what the scenario needs (e.g. a failback)."""
        try:
            for step in undo_faults(self.plan.site, self.plan.scenario, self.plan.faults,
                                    f"drill{record}"):
                self._mark(step)
            self.ctx.services.journal.update_continuity(record, {"faults_state": "restored"})
            self.restored = True
        except RelctlError as error:
            self.problems.append(f"restoring: {error.message}")
            self._mark(f"NOT restored: {error.message} (relctl drill restore {record})")

    def _finish(self, record: int, wall_start: datetime, moments: Moments,
                measures: dict[str, Any]) -> Outcome:
        plan, chosen = self.ctx.plan, self.plan.scenario
        targets = plan_logic.judge_targets(plan, moments.per_function, measures.get("rpo_s"))
        met = all(t.rto_met and t.rpo_met for t in targets) and self._fast_enough(measures)
        verdict = ("fail" if self.problems or not moments.recovered
                   else "pass" if met else "missed")
        good = self.ctx.services.last_good()
        report = DrillReport(
            id=record, scenario=chosen.name, fault=chosen.summary, service=plan.service,
            environment=plan.environment, started=wall_start.isoformat(), verdict=verdict,
            release=good.name if good else None, measures=measures,
            targets=[t.__dict__ for t in targets], timeline=self.timeline.events,
            problems=self.problems, restored=self.restored,
            preflight=[c.as_dict() for c in self.checks],
            improvements=plan_logic.improvements(plan, targets, measures, self.problems),
            max_failure_ratio=self.plan.settings.max_failure_ratio,
            mode=self.plan.site.mode, faults=[f.as_dict() for f in self.plan.faults],
            probe=probe_series(self.probe_samples, self.started),
            moments=moments.relative(self.started))
        data = report.as_dict()
        markdown = continuity_md.drill_markdown(data)
        out = self.ctx.services.env.state_dir / "drills" / str(record)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.md").write_text(markdown)
        (out / "report.xml").write_text(drill_junit_xml(data))
        (out / "report.html").write_text(drill_html(data))
        files = {"markdown": str(out / "report.md"), "junit": str(out / "report.xml"),
                 "html": str(out / "report.html"),
                 "dr_plan": str(self._write_dr_plan(data))}
        report = DrillReport(**{**data, "files": files})
        self.ctx.services.journal.end_continuity(
            record, "ok" if verdict == "pass" else "failed", {"report": report.as_dict()},
            report=markdown)
        code = {"pass": ExitCode.OK, "missed": ExitCode.TARGETS_MISSED}.get(
            verdict, ExitCode.CONTINUITY_FAILED)
        return Outcome("drill", record, verdict == "pass", int(code),
                       f"{chosen.name}: {verdict.upper()}; RTO {measures.get('rto_s')}s, RPO "
                       f"{measures.get('rpo_s')}s, {measures.get('load_failures', 0)} failed "
                       "requests", report, self.timeline.events, self.problems, markdown)

    def _fast_enough(self, measures: dict[str, Any]) -> bool:
        """The latency scenario's threshold: the load's p95 under drill.max_p95_ms."""
        limit = self.plan.settings.max_p95_ms
        if self.plan.scenario.name != "latency" or limit is None:
            return True
        p95 = measures.get("load_p95_ms")
        if p95 is None or p95 > limit:
            self._mark(f"the load's p95 ({p95} ms) is over drill.max_p95_ms ({limit} ms)")
            return False
        return True

    def _write_dr_plan(self, report: dict[str, Any]) -> Path:
        ctx = self.ctx
        good = ctx.services.last_good()
        path = (ctx.services.env.state_dir / "continuity" /
                f"{ctx.plan.service}-{ctx.plan.environment}-dr-plan.md")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(continuity_md.dr_plan_markdown(
            ctx.plan, release=report["release"], hosts=ctx.site.inventory.groups,
            last_drill=report, generated=datetime.now(UTC).isoformat(timespec="seconds"),
            versions=self.versions, release_version=good.version if good else None))
        return path

    def _mark(self, what: str) -> None:
        """An event on the timeline, shown as it happens: journaled on the drill's record
        (``relctl serve`` shows it), but for the marks between the fault and the
        recovery, which go with the next one."""
        self.timeline.add(time.monotonic() - self.started, what)
        self.progress(what)
        if self.record is not None and not self.quiet:
            self.ctx.services.journal.update_continuity(self.record,
                                                        {"timeline": self.timeline.events})


def probe_series(samples: list[tuple[float, bool, str]], started: float) -> dict[str, Any]:
    """The probe's samples for the reports: seconds since the drill started, 1/0, server."""
    return {"interval_s": 0.05,
            "samples": [[round(at - started, 3), int(ok), by] for at, ok, by in samples]}


def undo_faults(site: DrillSite, chosen: Scenario, faults: list[Fault], label: str
                ) -> list[str]:
    """Undo ``faults`` and then what the scenario needs; returns what was done."""
    done = site.undo(faults, label)
    done += chosen.after_undo(site)
    hosts = sorted({f.host for f in faults})
    deadline = time.monotonic() + site.ctx.plan.failover.verify_timeout
    while not all(site.ctx.site.lb.is_up(h) for h in hosts):
        if time.monotonic() > deadline:
            raise ContinuityError(f"the LB does not see {', '.join(hosts)} up again")
        time.sleep(0.2)
    return [*done, f"the LB sees {', '.join(hosts)} up again"]


def restore_drill(ctx: Continuity, lab: Lab, drill_id: int) -> list[str]:
    """Undo the journaled faults of drill ``drill_id`` (its controller died, or it ran
    with --no-restore); returns what was done."""
    journal = ctx.services.journal
    try:
        record = journal.continuity_record(drill_id)
    except KeyError:
        record = None
    if record is None or record.kind != "drill":
        raise InputError(f"no drill {drill_id} in the journal", hint="relctl drill list")
    if (record.service, record.environment) != (ctx.plan.service, ctx.plan.environment):
        raise InputError(f"drill {drill_id} ran for {record.service} in {record.environment}, "
                         f"not the plan's {ctx.plan.service} in {ctx.plan.environment}")
    detail = record.detail
    state = detail.get("faults_state")
    if state in (None, "planned"):
        return [f"drill {drill_id} injected no fault: nothing to undo"]
    if state == "restored":
        return [f"drill {drill_id} is already restored"]
    owner = detail.get("controller") or {}
    if record.state == "running" and _alive(owner):
        raise InputError(f"drill {drill_id} is still running (pid {owner.get('pid')})",
                         hint="let it finish, or stop it first")
    faults = [Fault.from_dict(f) for f in detail.get("faults", [])]
    done = undo_faults(site_for(ctx, lab), scenario(detail["scenario"]), faults,
                       f"drill{drill_id}-restore")
    journal.update_continuity(drill_id, {"faults_state": "restored",
                                         "restored_by": "relctl drill restore",
                                         "restore_steps": done})
    if record.state == "running":
        journal.end_continuity(drill_id, "failed", {"problems": [
            "the drill's controller stopped before it ended; its faults were undone by "
            "relctl drill restore"]})
    return done


def _alive(owner: dict[str, Any]) -> bool:
    try:
        process = psutil.Process(int(owner.get("pid", 0)))
        return abs(process.create_time() - float(owner.get("started", 0))) < 1
    except (psutil.Error, ValueError):
        return False
