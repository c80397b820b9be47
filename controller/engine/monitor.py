"""Warranty monitoring: after a release, re-run its checks on a schedule; act on a breach.

    check the release (released, not bad, manifest unchanged) -> claim the monitor
    each round, until the period ends or the rounds are done:
        still the release in production?   no: end (superseded, rolled back meanwhile)
        environment locked / a release in flight?  the round is skipped, not judged
        testinfra on the release's hosts -> a short Locust probe (absolute thresholds)
        -> journal the round -> decide (controller.planning.monitor)
    breach, reversible    -> ReleaseEngine.rollback (restore, verify, mark bad)   exit 3
    breach, irreversible  -> a "breach" notice and a journal line; roll forward    exit 4
    (or --alert-only)
    period over           -> summary                                               exit 0
    stop() (SIGINT/SIGTERM at the CLI) -> summary, "stopped early"                 exit 1

The rounds' figures live in the journal's monitor tables, not in the release's gate
results: a 72-hour warranty would otherwise bury the release's own gates under hundreds
of passing rounds. The files of the latest round are kept under the release's gate folder.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from controller.engine.gates import GateRunner, worst
from controller.engine.outcome import ReleaseOutcome
from controller.engine.release import ReleaseEngine
from controller.errors import ExitCode, InputError, RelctlError
from controller.journal import MonitorState, ReleaseRecord
from controller.manifest_loader import check_as_released
from controller.models.gates import Verdict
from controller.notify import notice_context, notify_event
from controller.planning.monitor import (
    LaterRelease,
    RoundResult,
    Schedule,
    decide,
    next_round_at,
    standing,
    summarize,
)

TOUCHED = ("applying", "applied", "verified", "failed", "restored")
WAIT_SLICE_S = 0.5  # how often a wait looks at the stop flag


@dataclass
class MonitorOutcome:
    """How a warranty monitor ended, for people and for pipelines."""

    release: str
    release_id: int
    monitor_id: int
    state: MonitorState
    exit_code: int
    message: str
    seconds: float
    summary: dict[str, Any]
    rounds: list[dict[str, Any]] = field(default_factory=list)
    rollback: ReleaseOutcome | None = None


@dataclass(frozen=True)
class Ending:
    """Why the loop ended."""

    state: MonitorState
    code: ExitCode | int
    message: str
    rollback: ReleaseOutcome | None = None


@dataclass
class Monitor:
    """Watches one released release through its warranty period."""

    engine: ReleaseEngine  # its manifest, environment, journal, progress and notifier
    record: ReleaseRecord
    schedule: Schedule
    alert_only: bool = False
    clock: Callable[[], float] = time.monotonic
    stopping: bool = field(default=False, init=False)

    def stop(self) -> None:
        """Ask the monitor to stop after the current round (safe from a signal handler)."""
        self.stopping = True

    def run(self) -> MonitorOutcome:
        """Claim the monitor, run rounds until the period ends or a breach, summarize."""
        hosts = self._check()
        journal, started = self.engine.journal, self.clock()
        monitor_id = journal.claim_monitor(self.record.id, self._settings(hosts))
        journal.log(self.record.id, f"monitor #{monitor_id} started: "
                                    f"{self.schedule.describe()}")
        self.engine.progress(f"monitor #{monitor_id} of {self.record.name} on "
                             f"{', '.join(hosts)}: {self.schedule.describe()}")
        results: list[RoundResult] = []
        try:
            ending = self._loop(monitor_id, hosts, results)
        except BaseException as error:
            journal.end_monitor(monitor_id, "failed", exit_code=int(ExitCode.ERROR),
                                message=f"monitor stopped by an error: {error}"[:1000],
                                summary=summarize(results).as_dict())
            raise
        finally:
            self.engine.env.close_connections()  # the checks' ssh masters
        summary = summarize(results).as_dict()
        journal.end_monitor(monitor_id, ending.state, exit_code=int(ending.code),
                            message=ending.message, summary=summary)
        journal.log(self.record.id, f"monitor #{monitor_id} {ending.state}: {ending.message}")
        return MonitorOutcome(self.record.name, self.record.id, monitor_id, ending.state,
                              int(ending.code), ending.message, self.clock() - started,
                              summary, self._rounds(monitor_id), ending.rollback)

    # -- before the first round ----------------------------------------------------------

    def _check(self) -> list[str]:
        """The release's hosts; ``InputError`` when it cannot or need not be monitored."""
        record, manifest = self.record, self.engine.manifest
        if record.state != "released" or record.bad:
            raise InputError(f"{record.name} is {record.state}{' (bad)' if record.bad else ''}:"
                             " only a released release is monitored",
                             hint="see: relctl show " + record.name)
        check_as_released(manifest, record, "restore the manifest as released, then monitor again")
        hosts = [h.host for h in self.engine.journal.host_states(record.id)
                 if h.state in TOUCHED]
        if not hosts:
            raise InputError(f"the journal records no host that {record.name} changed")
        gate = manifest.gates.locust
        if self.schedule.probe_s and gate is not None and not (gate.url or self.engine.env.lb_url):
            raise InputError("the Locust gate has no url and no lab load balancer is known",
                             hint="give the gate a url, or monitor with --probe 0")
        return hosts

    def _settings(self, hosts: list[str]) -> dict[str, Any]:
        s = self.schedule
        return {"every_s": s.every_s, "for_s": s.for_s, "rounds": s.rounds,
                "probe_s": s.probe_s, "alert_only": self.alert_only, "hosts": hosts,
                "reversible": self._reversible()}

    def _reversible(self) -> bool:
        return not self.engine.manifest.irreversible_items()

    # -- the rounds ----------------------------------------------------------------------

    def _loop(self, monitor_id: int, hosts: list[str], results: list[RoundResult]) -> Ending:
        began = self.clock()
        at: float | None = 0.0
        while at is not None:
            if self._wait(at - (self.clock() - began)):
                return self._stopped(results)
            last_start = self.clock() - began
            where, why = self._standing()
            if where == "ended":
                return Ending("ended", ExitCode.OK, f"monitor ended: {why}")
            results.append(self._round(monitor_id, len(results) + 1, hosts,
                                       paused=why if where == "paused" else None))
            if self.stopping:
                return self._stopped(results)
            at = next_round_at(self.schedule, len(results), last_start, self.clock() - began)
            decision = decide(results, reversible=self._reversible(),
                              alert_only=self.alert_only, over=at is None)
            if decision.action == "rollback":
                return self._roll_back(decision.reason)
            if decision.action == "alert":
                return self._alert(decision.reason, hosts)
        return Ending("passed", ExitCode.OK,
                      f"warranty monitoring over: {tally(results)}, no breach")

    def _standing(self) -> tuple[str, str]:
        journal, record = self.engine.journal, self.record
        now = journal.release(record.id)
        later = [LaterRelease(r.name, r.state, any(h.state in TOUCHED
                                                   for h in journal.host_states(r.id)))
                 for r in reversed(journal.history(limit=50, environment=record.environment,
                                                   service=record.service))
                 if r.id > record.id]
        lock = journal.lock_status(record.environment)
        return standing(now.state, now.bad, later, lock.release if lock else None)

    def _round(self, monitor_id: int, number: int, hosts: list[str],
               paused: str | None) -> RoundResult:
        journal = self.engine.journal
        round_id = journal.begin_round(monitor_id, number)
        detail: dict[str, Any] = {}
        if paused is not None:
            result = RoundResult(number, "skipped", (paused,))
        else:
            result, detail = self._measure(number, hosts)
        if self.stopping and result.verdict != "skipped":
            # Ctrl-C reaches the checks' own processes too: what they saw is not judged.
            result = RoundResult(number, "skipped", ("stopped during the round: not judged",))
        journal.end_round(round_id, result.verdict,
                          {**detail, "reasons": list(result.reasons), "load": result.load})
        self.engine.progress(round_line(result, self.schedule.planned_rounds()))
        return result

    def _measure(self, number: int, hosts: list[str]) -> tuple[RoundResult, dict[str, Any]]:
        """testinfra on ``hosts``, then (unless the checks failed) the Locust probe."""
        gates = GateRunner(self.engine.env, self.engine.journal, self.record.id,
                           self.engine.manifest, record=False)
        checks = gates.checks(hosts, "monitor", self.record.version)
        detail: dict[str, Any] = {"hosts": hosts, "testinfra": vars(checks)}
        verdicts, load = [checks], None
        gate = self.engine.manifest.gates.locust
        if checks.outcome != "fail" and gate is not None and self.schedule.probe_s > 0:
            probe, load = self._probe(gates)
            detail["locust"] = {**vars(probe), "figures": load}
            verdicts.append(probe)
        verdict = worst(verdicts)
        return RoundResult(number, verdict.outcome, tuple(verdict.reasons), load), detail

    def _probe(self, gates: GateRunner) -> tuple[Verdict, dict[str, float] | None]:
        """A short Locust run judged by the absolute thresholds only (no baseline)."""
        try:
            stats = gates.load("monitor-probe", duration_s=self.schedule.probe_s)
        except RelctlError as error:
            return Verdict("inconclusive", [f"Locust probe did not run: {error.message}"]), None
        assert stats is not None
        return gates.judge_load(stats, None), stats.figures()

    def _wait(self, seconds: float) -> bool:
        """Sleep ``seconds`` in short slices; True as soon as a stop was asked."""
        deadline = self.clock() + seconds
        while not self.stopping and (left := deadline - self.clock()) > 0:
            time.sleep(min(WAIT_SLICE_S, left))
        return self.stopping

    # -- how it ends ---------------------------------------------------------------------

    def _stopped(self, results: list[RoundResult]) -> Ending:
        return Ending("stopped", ExitCode.ERROR,
                      f"stopped early after {tally(results)}, no breach seen: the warranty "
                      "period was not completed")

    def _roll_back(self, reason: str) -> Ending:
        journal = self.engine.journal
        record = journal.release(self.record.id)  # as it stands now, not as it was
        if record.state != "released" or record.bad:
            return Ending("ended", ExitCode.OK, f"breach seen, but {record.name} is already "
                                                f"{record.state}: {reason}")
        journal.log(record.id, f"warranty breach: {reason}: rolling back")
        self.engine.progress(f"warranty breach: {reason}: rolling back")
        try:
            outcome = self.engine.rollback(record, f"warranty breach: {reason}")
        except RelctlError as error:
            message = f"warranty breach: {reason}; rollback not possible: {error.message}"
            self._notify(reason, self._hosts(record))
            return Ending("failed", ExitCode.ROLLBACK_FAILED, message)
        state: MonitorState = "rolled_back" if outcome.state == "rolled_back" else "failed"
        return Ending(state, outcome.exit_code, outcome.message, outcome)

    def _alert(self, reason: str, hosts: list[str]) -> Ending:
        what = ("roll back (relctl rollback " + self.record.name + ") or roll forward"
                if self._reversible() else "roll forward with a fixed release")
        message = f"warranty breach: {reason}; not rolled back: a human must act: {what}"
        self.engine.journal.log(self.record.id, message)
        self.engine.progress(message)
        self._notify(reason, hosts)
        return Ending("alerted", ExitCode.ROLLBACK_FAILED, message)

    def _notify(self, reason: str, hosts: list[str]) -> None:
        """The "breach" notice through the manifest's channels; journaled, never raises."""
        manifest, notifier = self.engine.manifest, self.engine.notifier
        context = notice_context(manifest, "breach", now=datetime.now().astimezone(),
                                 hosts=hosts, reason=reason)
        deliveries = notify_event(manifest.notify, "breach", context, self.engine.journal,
                                  self.record.id, notifier.stdout if notifier else None)
        for delivery in deliveries:
            self.engine.progress(delivery.summary())

    def _hosts(self, record: ReleaseRecord) -> list[str]:
        return [h.host for h in self.engine.journal.host_states(record.id)]

    def _rounds(self, monitor_id: int) -> list[dict[str, Any]]:
        return [{"round": r.round, "verdict": r.verdict, "started": r.started.isoformat(),
                 "seconds": round((r.ended - r.started).total_seconds(), 1) if r.ended else None,
                 "reasons": r.detail.get("reasons", [])[:5], "load": r.detail.get("load")}
                for r in self.engine.journal.monitor_rounds(monitor_id=monitor_id)]


def round_line(result: RoundResult, planned: int | None) -> str:
    """One progress line: ``round 3/25 pass: 8 checks passed; p95 12 ms, 80.1 rps ...``."""
    of = f"/{planned}" if planned is not None else ""
    reasons = "; ".join(result.reasons[:3]) or "-"
    return f"round {result.number}{of} {result.verdict}: {reasons}"


def tally(results: list[RoundResult]) -> str:
    """``3 rounds, 2 passed``: how many rounds ran and how many passed."""
    passed = sum(1 for r in results if r.verdict == "pass")
    return f"{len(results)} round{'s' if len(results) != 1 else ''}, {passed} passed"
