"""A test failover: prove the backup site without touching the primary or the LB.

    backups ready on the last good release (deployed where not) -> the newest replica
    loaded on them (taken first if there is none) -> every critical function checked on
    each backup host directly, most urgent first -> the would-be RTO (start -> every
    function answered) -> the replica tagged "tested at" -> clean up: the replica loaded
    again, so the checks' writes do not linger on the backup site

The LB keeps serving from the primary site throughout: no runtime API write, no Ansible
run on a primary host. Recorded as a drill (scenario ``test-failover``) with its report.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from controller.adapters import http
from controller.engine.continuity import Continuity, DrillReport, Outcome, rounded
from controller.engine.continuity.failover import prepare_backups
from controller.engine.continuity.methods import replicate, replication_of
from controller.engine.continuity.records import ReplicaRecord, StepRunner
from controller.errors import ContinuityError, ExitCode, RelctlError
from controller.models.continuity import CriticalFunction
from controller.planning import continuity as plan_logic
from controller.reports import continuity_md

NAME = "test-failover"
SUMMARY = ("none injected: the backup site brought up on the newest replica and the last "
           "good release, every critical function checked on it directly; the LB and the "
           "primary site untouched")


@dataclass
class FailoverTest:
    """One test failover of the plan's backup site."""

    ctx: Continuity
    run: StepRunner = field(init=False)
    answered: dict[str, float | None] = field(default_factory=dict)
    answered_by: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.run = StepRunner(NAME, self.ctx.services.progress)

    def go(self) -> Outcome:
        ctx = self.ctx
        record = ctx.services.begin("drill", {
            "scenario": NAME, "mode": "test", "faults": [], "controller": {"pid": os.getpid()}})
        wall_start = datetime.now(UTC)
        self.run.mark(f"test failover {record} started: the LB and the primaries are not "
                      "touched")
        replica, good, problems = None, None, list[str]()
        measures: dict[str, Any] = {}
        try:
            good = prepare_backups(ctx, self.run)
            replica = self._replica()
            prepared = self.run.since_start()
            self._check_functions()
            verified = self.run.since_start()
            done = [at for at in self.answered.values() if at is not None]
            measures = {"prepare_s": round(prepared, 3),
                        "verify_s": round(verified - prepared, 3),
                        "rto_s": rounded(max(done) if len(done) == len(self.answered) and done
                                         else None),
                        "answered_by": self.answered_by, "functions_at_s": self.answered,
                        "replica_id": replica.id if replica else None,
                        "replica_captured_at": replica.captured_iso if replica else None}
            if replica is not None:
                self._clean_up(replica)
                self._tag(replica, record, measures["rto_s"] is not None)
        except RelctlError as error:
            problems.append(error.message)
            self.run.mark(f"test failover step failed: {error.message}")
        finally:
            ctx.close()
        return self._finish(record, wall_start, good.name if good else None, measures,
                            problems)

    def _replica(self) -> ReplicaRecord | None:
        ctx = self.ctx
        if not ctx.plan.data:
            self.run.mark("the plan declares no data: the backups keep their own")
            return None
        replica, done = replication_of(ctx).restore(ctx.site.backups, "test", only_missing=False)
        if replica is None:  # nothing replicated yet: replicate now (reads the writer only)
            replicate(ctx)
            replica, done = replication_of(ctx).restore(ctx.site.backups, "test",
                                                    only_missing=False)
        self.run.mark(done)
        return replica

    def _check_functions(self) -> None:
        """Each function on every backup host directly, most urgent first, until it
        answers on all of them or the plan's verify timeout."""
        ctx = self.ctx
        deadline = time.monotonic() + ctx.plan.failover.verify_timeout
        for function in ctx.plan.by_priority():
            waiting, self.answered[function.name] = list(ctx.site.backups), None
            while waiting and time.monotonic() < deadline:
                waiting = [h for h in waiting if not self._answers(function, h)]
                if waiting:
                    time.sleep(0.05)
            self.answered_by[function.name] = [h for h in ctx.site.backups if h not in waiting]
            if not waiting:
                self.answered[function.name] = self.run.since_start()
            self.run.mark(f"{function.name}: " + ("answered on " + ", ".join(ctx.site.backups)
                                                  if not waiting else "NO answer from "
                                                  + ", ".join(waiting)))

    def _answers(self, function: CriticalFunction, host: str) -> bool:
        check = function.check
        answer = http.request(check.method, self.ctx.site.host_url(host, check.path),
                              check.body, check.timeout)
        return answer.status == check.expect_status

    def _clean_up(self, replica: ReplicaRecord) -> None:
        ctx = self.ctx
        replication_of(ctx).restore(ctx.site.backups, "test-clean", only_missing=False)
        self.run.mark("cleaned up: the replica restored again (the checks' writes are gone)")

    def _tag(self, replica: ReplicaRecord, record: int, ok: bool) -> None:
        tested = [*replica.tested,
                  {"at": datetime.now(UTC).isoformat(timespec="seconds"),
                   "test_failover": record, "ok": ok}]
        self.ctx.services.journal.update_continuity(replica.id, {"tested": tested})
        self.run.mark(f"replica {replica.id} tagged: tested at {tested[-1]['at']}")

    def _finish(self, record: int, wall_start: datetime, release: str | None,
                measures: dict[str, Any], problems: list[str]) -> Outcome:
        ctx, plan = self.ctx, self.ctx.plan
        targets = plan_logic.judge_targets(plan, self.answered, None)
        ok = not problems and measures.get("rto_s") is not None
        verdict = ("fail" if not ok else "pass" if all(t.rto_met for t in targets)
                   else "missed")
        report = DrillReport(
            id=record, scenario=NAME, fault=SUMMARY, service=plan.service,
            environment=plan.environment, started=wall_start.isoformat(), verdict=verdict,
            release=release, measures=measures, targets=[t.__dict__ for t in targets],
            timeline=self.run.timeline.events, problems=problems + self.run.warnings,
            restored=True, improvements=[], max_failure_ratio=None, mode="test")
        markdown = continuity_md.drill_markdown(report.as_dict())
        ctx.services.journal.end_continuity(
            record, "ok" if verdict == "pass" else "failed", {"report": report.as_dict()},
            report=markdown)
        code = {"pass": ExitCode.OK, "missed": ExitCode.TARGETS_MISSED}.get(
            verdict, ExitCode.CONTINUITY_FAILED)
        return Outcome("drill", record, verdict == "pass", int(code),
                       f"{NAME}: {verdict.upper()}; would-be RTO {measures.get('rto_s')}s "
                       f"on {', '.join(ctx.site.backups)}; the LB and the primaries untouched",
                       report, self.run.timeline.events, report.problems, markdown)


def run_test_failover(ctx: Continuity) -> Outcome:
    """Run a test failover of ``ctx``'s backup site (see the module's docstring)."""
    if not ctx.site.backups:
        raise ContinuityError("the plan's backup site has no hosts")
    return FailoverTest(ctx).go()
