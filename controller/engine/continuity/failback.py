"""Failback: bring the primary site back with the backup site's data.

    capture     the old primary's data and the backup site's, each a consistent copy
    deploy      the primaries on the last good release
    load        the backup site's data loaded into the primaries; where it is copied
                (SQLite), the backups first leave the LB's service, their requests in
                progress end, and their data is copied once more: a write the backup
                acknowledged while the primaries were deployed is not left behind (the
                LB holds new requests, relctl_hold.lua, or answers 503: never a lost write)
    switch      the LB back to the primaries (they must answer first); backups held for
                the load back in service as they were
    verify      every critical function through the LB
    persist     the LB's server states saved
then the catch-up report: rows the old primary got after the last replication that the
backup lacks (to re-enter), and rows written on the backup site during the outage.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from controller.engine.continuity.context import Continuity, Verified
from controller.engine.continuity.methods import replication_of
from controller.engine.continuity.records import (
    FailbackFigures,
    Outcome,
    Step,
    StepRunner,
)
from controller.engine.continuity.replication import replica_tables
from controller.errors import ContinuityError, RelctlError
from controller.models.rows import TableRows
from controller.planning import continuity as plan_logic
from controller.reports import continuity_md

RETRY_HINT = ("the backup site still serves; bring the primary hosts back (relctl lab up) "
              "and run failback again")
# How long the backups' requests in progress may take to end once they left the LB's
# service, before the failback gives up (and puts them back) rather than copy their data
# while a write may still land.
DRAIN_S = 10.0


@dataclass
class _Failback:
    """One failback as its steps fill it in."""

    ctx: Continuity
    run: StepRunner
    store: Path
    writer: str
    active: str
    tag: str
    old: dict[str, TableRows] = field(default_factory=dict)  # the old primary's tables
    new: dict[str, TableRows] = field(default_factory=dict)  # the backup site's
    verified: Verified = field(default_factory=lambda: Verified({}, []))
    held: list[str] = field(default_factory=list)  # backups out of the LB's service for it
    held_at: float | None = None  # when the writes were held (monotonic)
    held_s: float | None = None  # until the primaries took over

    def steps(self) -> list[Step]:
        return [Step("capture", self.capture), Step("deploy", self.deploy),
                Step("load", self.load), Step("switch", self.switch),
                Step("verify", self.verify), Step("persist", self.persist),
                Step("replication", self.resume)]

    def capture(self) -> str:
        self.old, self.new = replication_of(self.ctx).catch_up_tables(self.store,
                                                                  self.tag)
        return f"data of the old primary ({self.writer}) and the backup site captured"

    def deploy(self) -> str | None:
        good = self.ctx.services.last_good()
        if good is not None:
            self.ctx.deploy(good, self.ctx.site.primaries, f"{self.tag}-deploy")
            return f"{', '.join(self.ctx.site.primaries)} on {good.name}"
        down = [h for h in self.ctx.site.primaries if not self.ctx.site.healthy(h, timeout=2)]
        return self.ctx.start_service(down, self.tag) if down else None

    def load(self) -> str:
        method = replication_of(self.ctx)
        final = method.final_copy(self.store, self.tag, self.hold_writes)
        if final is not None:
            self.new = final
        return method.bring_back(self.store, self.tag)

    def hold_writes(self) -> None:
        """The backups out of the LB's service (new requests wait for a server, or get
        503), then every request in progress on them ended: no write lands after this."""
        lb, backups = self.ctx.site.lb, self.ctx.site.backups
        self.held = [h for h in backups if h not in lb.in_maintenance(backups)]
        lb.activate(active=[], standby=self.held)
        self.held_at = time.monotonic()
        self.run.mark(f"writes held: {', '.join(backups)} out of the LB's service")
        deadline = time.monotonic() + DRAIN_S
        while (left := lb.in_flight(backups)) > 0:
            if time.monotonic() > deadline:
                raise ContinuityError(
                    f"{left} requests still in progress on {', '.join(backups)} "
                    f"{DRAIN_S:.0f} s after they left the LB's service: their writes could "
                    "be left behind, so their data was not copied")
            time.sleep(0.05)

    def release_writes(self) -> None:
        """The backups held for the load back in the LB's service (a failback that stops
        before its switch leaves the backup site serving, as it found it)."""
        if self.held:
            self.ctx.site.lb.activate(active=self.held, standby=[])
            self.held = []

    def switch(self) -> str:
        down = [h for h in self.ctx.site.primaries if not self.ctx.site.healthy(h, timeout=2)]
        if down:
            raise ContinuityError(f"primary hosts not healthy: {', '.join(down)}; LB not "
                                  "switched back")
        self.ctx.site.lb.activate(active=self.ctx.site.primaries, standby=[])
        if self.held_at is not None:
            self.held_s = round(time.monotonic() - self.held_at, 3)
        self.release_writes()
        return "LB: primary site ready again"

    def verify(self) -> str:
        self.verified = self.ctx.site.wait_functions(self.run.started,
                                                     self.ctx.plan.failover.verify_timeout)
        return "critical functions verified: " + ", ".join(
            f"{n} {'ok' if at is not None else 'FAILED'}"
            for n, at in self.verified.passed_at.items())

    def persist(self) -> str | None:
        warning = self.ctx.site.lb.persist()
        if warning:
            self.run.warnings.append(warning)
        return None

    def resume(self) -> str | None:
        """Replication from the writer again (the primaries serve: a warning, not a
        failed failback, when it cannot start)."""
        if not self.ctx.plan.data:
            return None
        try:
            return replication_of(self.ctx).resume()
        except RelctlError as error:
            self.run.warnings.append(f"replication not resumed: {error.message}")
            return "replication NOT resumed"


def failback(ctx: Continuity) -> Outcome:
    """Bring the primary site back with the backup's data; report what must be re-entered."""
    runner = StepRunner("failback", ctx.services.progress)
    record = ctx.services.begin("failback", {"primaries": ctx.site.primaries})
    store = ctx.services.env.state_dir / "continuity" / f"failback-{record}"
    work = _Failback(ctx, runner, store, ctx.site.writer(), ctx.site.backups[0], f"fb{record}")
    try:
        try:
            runner.walk(work.steps())
        finally:  # a failure or a cancel before the switch: the backups serve again
            try:
                work.release_writes()
            except RelctlError as error:
                runner.warnings.append(f"{', '.join(work.held)} NOT back in the LB's "
                                       f"service: {error.message}")
                runner.mark(runner.warnings[-1])
    except RelctlError as error:
        ctx.services.journal.end_continuity(record, "failed", {
            "error": error.message, "timeline": runner.timeline.events})
        raise ContinuityError(error.message, hint=error.hint or RETRY_HINT) from error
    finally:
        ctx.close()
    replica = ctx.services.last_replica()
    catch = plan_logic.catch_up(work.old, work.new, replica_tables(replica))
    report = continuity_md.catch_up_markdown(record, catch,
                                          replica.captured_iso if replica else None)
    store.mkdir(parents=True, exist_ok=True)
    (store / "catch-up.md").write_text(report)
    catch_json = {"missing_on_backup": catch.missing_on_backup,
                  "only_on_backup": catch.only_on_backup,
                  "after_replication": catch.after_replication}
    (store / "catch-up.json").write_text(json.dumps(catch_json, indent=1, default=str))
    ok = work.verified.all_passed
    figures = FailbackFigures(round(runner.since_start(), 3), work.verified.served_by,
                              catch_json, str(store / "catch-up.md"), catch.total_missing,
                              work.held_s)
    ctx.services.journal.end_continuity(record, "ok" if ok else "failed", {
        "figures": figures.as_dict(), "timeline": runner.timeline.events,
        "warnings": runner.warnings}, report=report)
    held = (f"; writes held {work.held_s:.1f} s for the last copy of the backup's data"
            if work.held_s is not None else "")
    message = (f"failed back to {', '.join(ctx.site.primaries)}{held}; {catch.total_missing} "
               f"rows to re-enter (catch-up report: {store / 'catch-up.md'})")
    ctx.services.announce("failback", message)
    return Outcome("failback", record, ok, 0 if ok else int(ContinuityError.exit_code),
                   message, figures, runner.timeline.events, runner.warnings, report)


