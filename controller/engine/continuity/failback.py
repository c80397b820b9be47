"""Failback: bring the primary site back with the backup site's data.

    capture     the old primary's data and the backup site's, each a consistent copy
    deploy      the primaries on the last good release
    load        the backup site's data loaded into the primaries
    switch      the LB back to the primaries (they must answer first)
    verify      every critical function through the LB
    persist     the LB's server states saved
then the catch-up report: rows the old primary got after the last replication that the
backup lacks (to re-enter), and rows written on the backup site during the outage.
"""

from __future__ import annotations

import json
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
        return replication_of(self.ctx).bring_back(self.store, self.tag)

    def switch(self) -> str:
        down = [h for h in self.ctx.site.primaries if not self.ctx.site.healthy(h, timeout=2)]
        if down:
            raise ContinuityError(f"primary hosts not healthy: {', '.join(down)}; LB not "
                                  "switched back")
        self.ctx.site.lb.activate(active=self.ctx.site.primaries, standby=[])
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
        runner.walk(work.steps())
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
                              catch_json, str(store / "catch-up.md"), catch.total_missing)
    ctx.services.journal.end_continuity(record, "ok" if ok else "failed", {
        "figures": figures.as_dict(), "timeline": runner.timeline.events,
        "warnings": runner.warnings}, report=report)
    message = (f"failed back to {', '.join(ctx.site.primaries)}; {catch.total_missing} rows to "
               f"re-enter (catch-up report: {store / 'catch-up.md'})")
    ctx.services.announce("failback", message)
    return Outcome("failback", record, ok, 0 if ok else int(ContinuityError.exit_code),
                   message, figures, runner.timeline.events, runner.warnings, report)


