"""Failover: move the service to the backup site, the primary site reachable or not.

    replica     the newest data on the backup hosts (the plan's replication method: a
                copy loaded if not yet, Litestream restored, a PostgreSQL standby
                promoted); first, since the services there may need it to answer
    backups     answer and run the last good release (deployed if not); full preflight:
                testinfra on them before anything switches (the primary is never touched)
    switch      the LB: primaries to maintenance, backups ready (no reload)
    verify      every critical function through the LB, most urgent first
    after       fast preflight: testinfra on the backup site right after the switch
    persist     the LB's server states saved (a reload keeps them)
    standbys    what the replication still owes the backup site (PostgreSQL: the other
                standbys stream from the promoted one); after the RTO, a warning if not
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from controller.engine.continuity.context import Continuity, Verified
from controller.engine.continuity.methods import replication_of
from controller.engine.continuity.preflight import Preflight
from controller.engine.continuity.records import (
    FailoverFigures,
    Outcome,
    ReplicaRecord,
    Step,
    StepRunner,
    rounded,
)
from controller.errors import ContinuityError, InputError, RelctlError
from controller.journal import ReleaseRecord


@dataclass
class _Failover:
    """One failover as its steps fill it in."""

    ctx: Continuity
    mode: str
    run: StepRunner
    record: int
    good: ReleaseRecord | None = None
    replica: ReplicaRecord | None = None
    switch_start: float = 0.0
    switched: float = 0.0
    verify_end: float = 0.0
    verified: Verified = field(default_factory=lambda: Verified({}, []))

    def steps(self) -> list[Step]:
        return [Step("replica", self.ensure_replica), Step("backups", self.backups),
                Step("switch", self.switch), Step("verify", self.verify),
                Step("after", self.after), Step("persist", self.persist),
                Step("standbys", self.standbys)]

    def backups(self) -> str | None:
        self.good = prepare_backups(self.ctx, self.run)
        if self.mode == "full":
            failed = self.ctx.testinfra(self.good, self.ctx.site.backups, "failover-preflight")
            if failed:
                raise ContinuityError("testinfra fails on the backup site: "
                                      + "; ".join(failed[:5]) + "; nothing switched")
            return "testinfra green on the backup site"
        return None

    def ensure_replica(self) -> str:
        ctx = self.ctx
        if not ctx.plan.data:
            return "the plan declares no data: the backups serve their own"
        self.replica, done = replication_of(ctx).restore(
            ctx.site.backups, f"failover{self.record}", only_missing=True)
        if self.replica is None:
            self.run.warnings.append(f"{done}: the backups serve their own data")
        return done

    def switch(self) -> str:
        ctx = self.ctx
        self.switch_start = time.monotonic()
        ctx.site.lb.activate(active=ctx.site.backups, standby=ctx.site.primaries)
        self.switched = time.monotonic()
        return (f"LB: {', '.join(ctx.site.primaries)} in maintenance, "
                f"{', '.join(ctx.site.backups)} ready")

    def verify(self) -> None:
        self.verified = self.ctx.site.wait_functions(self.run.started,
                                                     self.ctx.plan.failover.verify_timeout)
        self.verify_end = time.monotonic()
        for name, at in self.verified.passed_at.items():
            self.run.timeline.add(at if at is not None else self.verify_end - self.run.started,
                                  f"{name}: {'verified' if at is not None else 'NOT verified'}")

    def after(self) -> str | None:
        if self.mode != "fast":
            return None
        failed = self.ctx.testinfra(self.good, self.ctx.site.backups, f"failover-{self.record}")
        if failed:
            self.run.warnings.append("testinfra after the switch failed: "
                                     + "; ".join(failed[:5]))
        return "testinfra on the backup site: " + ("green" if not failed else
                                                    "FAILED: " + "; ".join(failed[:3]))

    def standbys(self) -> str | None:
        if not self.ctx.plan.data:
            return None
        try:
            return replication_of(self.ctx).settle()
        except RelctlError as error:  # the backup site serves: a warning
            self.run.warnings.append(f"the other standbys do not follow: {error.message}")
            return "standbys NOT following the promoted one"

    def persist(self) -> str:
        warning = self.ctx.site.lb.persist()
        if warning:
            self.run.warnings.append(warning)
        return "LB state persisted" if not warning else "LB state NOT persisted"

    def figures(self, wall_start: datetime, fault_at: float | None,
                detected_at: float | None) -> FailoverFigures:
        started, passed = self.run.started, self.verified.passed_at
        done = [at for at in passed.values() if at is not None]
        last = max(done) if done and self.verified.all_passed else None
        return FailoverFigures(
            version=self.good.version if self.good else None, preflight=self.mode,
            preflight_s=round(self.switch_start - started, 3),
            switch_s=round(self.switched - self.switch_start, 3),
            verify_s=round(self.verify_end - self.switched, 3),
            rto_from_start_s=rounded(last),
            rto_from_detection_s=rounded(last + started - detected_at
                                         if last is not None and detected_at else None),
            rto_from_fault_s=rounded(last + started - fault_at
                                     if last is not None and fault_at else None),
            functions_at_s=passed, served_by=self.verified.served_by,
            replica_id=self.replica.id if self.replica else None,
            replica_captured_at=self.replica.captured_iso if self.replica else None,
            rpo_s=_rpo(self.replica, wall_start, fault_at, started),
            started_at=wall_start.isoformat())


def prepare_backups(ctx: Continuity, run: StepRunner) -> ReleaseRecord | None:
    """The backup hosts answer and run the last good release (deployed where they do
    not); returns that release. Never touches the primary site."""
    good = ctx.services.last_good()
    wanted = good.version if good else None
    if good is None:
        run.warnings.append("no release is marked good in the journal: the backups keep what "
                            "they run")
    stale = [h for h in ctx.site.backups if not ctx.site.healthy(h) or not runs(ctx, h, wanted)]
    if stale and good is not None:
        run.mark(f"deploying {good.name} on {', '.join(stale)}")
        ctx.deploy(good, stale, f"{run.kind}-deploy")
        stale = [h for h in stale if not ctx.site.healthy(h, timeout=2)]
    if stale:
        raise ContinuityError(f"backup hosts not healthy: {', '.join(stale)}; nothing switched",
                              hint="fix the backup site, or run relctl lab up on the lab")
    run.mark(f"backup site healthy on {wanted or 'its current release'}")
    return good


def runs(ctx: Continuity, host: str, wanted: str | None) -> bool:
    """Whether ``host`` runs release ``wanted`` (any, when None or the plan reads no
    version); a version the plan cannot read is an error, never "stale"."""
    if wanted is None or ctx.plan.version_path is None:
        return True
    read = ctx.site.version(host)
    if read.version is None:
        raise InputError(f"cannot read the version on {host}: {read.problem}; nothing "
                         "switched", hint="set version_pointer or version_pattern in the plan")
    return read.version == wanted


def failover(ctx: Continuity, *, preflight: str | None = None,
             fault_at: float | None = None, detected_at: float | None = None,
             checked: bool = False) -> Outcome:
    """Move the service to the backup site. ``fault_at``/``detected_at`` are
    ``time.monotonic()`` readings (a drill knows them); RTO is counted from each.
    ``checked``: the caller ran the preflight (a drill, before its fault); else it runs
    here first, and a failed check is exit 2 with nothing switched."""
    plan, wall_start = ctx.plan, datetime.now(UTC)
    mode = preflight or plan.failover.preflight
    if not checked:
        try:
            Preflight(ctx, ctx.site.backups, []).check("the failover", replicate=False)
        except RelctlError:
            ctx.close()  # refused: nothing follows; else the failover reuses the masters
            raise
    runner = StepRunner("failover", ctx.services.progress)
    record = ctx.services.begin("failover", {"preflight": mode, "backups": ctx.site.backups})
    runner.mark("failover started")
    work = _Failover(ctx, mode, runner, record)
    try:
        runner.walk(work.steps())
    except RelctlError as error:
        ctx.services.journal.end_continuity(record, "failed", {
            "error": error.message, "timeline": runner.timeline.events})
        raise
    finally:
        ctx.close()
    figures = work.figures(wall_start, fault_at, detected_at)
    ok = work.verified.all_passed
    message = (f"failed over to {', '.join(ctx.site.backups)} in {figures.rto_from_start_s}s"
               if ok else "failover switched the LB but some critical functions do not answer")
    if ok and runner.warnings:
        message += f" ({len(runner.warnings)} warnings)"
    ctx.services.journal.end_continuity(record, "ok" if ok else "failed", {
        "figures": figures.as_dict(), "timeline": runner.timeline.events,
        "warnings": runner.warnings})
    ctx.services.journal.log(None, f"failover {record}: {message}")
    ctx.services.announce("failover", message)
    return Outcome("failover", record, ok, 0 if ok else int(ContinuityError.exit_code),
                   message, figures, runner.timeline.events, runner.warnings)


def _rpo(replica: ReplicaRecord | None, wall_start: datetime, fault_at: float | None,
         started: float) -> float | None:
    """Age of the restored data when the fault hit (or when the failover started)."""
    if replica is None or replica.captured_at is None:
        return None
    fault_wall = wall_start.timestamp() - (started - fault_at if fault_at else 0.0)
    return round(max(0.0, fault_wall - replica.captured_at.timestamp()), 3)
