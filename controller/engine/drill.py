"""DR drills on the staging lab: real faults under real load, measured against targets.

    healthy lab? -> replicate -> Locust through the LB + relctl's probe (every 50 ms)
    -> warm-up -> inject the fault -> detect it (per-host health polls)
    -> recover (failover for site-loss; HAProxy for host-loss/service-crash/flap)
    -> settle -> stop the load -> restore the lab (lab up, failback, restart)
    -> RTO, RPO, failed requests judged per critical function -> report + DR plan

Drills inject faults only into lab hosts relctl started (by their recorded pids).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from controller.adapters import processes
from controller.adapters.locust import LoadRun, start_load, stop_load
from controller.engine.continuity import Continuity, Outcome, failback, failover, rounded
from controller.engine.lab import Lab
from controller.errors import ContinuityError, ExitCode, InputError, RelctlError
from controller.models.continuity import DrillSettings
from controller.models.lab import LabState
from controller.planning import continuity as plan_logic
from controller.planning.continuity import Timeline
from controller.reports.drill_junit import drill_junit_xml

SCENARIOS = {
    "site-loss": "every primary host lost (sshd, PID 1 of the host, killed: the host is gone); "
                 "relctl fails over to the backup site",
    "host-loss": "the active primary host lost; HAProxy moves the traffic to the next primary",
    "service-crash": "the service process on the active primary killed; HAProxy moves the "
                     "traffic, relctl restarts the service",
    "lb-backend-flap": "the active primary's LB health forced down and up again several "
                       "times; HAProxy keeps the traffic on healthy servers",
}


@dataclass
class Probe:
    """Requests through the LB every ``interval`` seconds, in a thread: the outage as
    users see it (first failure to the first success after the last one)."""

    ctx: Continuity
    interval: float = 0.05
    samples: list[tuple[float, bool, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        # A read-only check when the plan has one: the probe runs every 50 ms.
        functions = self.ctx.plan.by_priority()
        function = next((f for f in functions if f.check.method in ("GET", "HEAD")),
                        functions[0])
        check = function.check

        def loop() -> None:
            while not self._stop.is_set():
                answer = self.ctx.check(function)
                self.samples.append((time.monotonic(), answer.status == check.expect_status,
                                     answer.served_by))
                self._stop.wait(self.interval)

        self._thread = threading.Thread(target=loop, name="relctl-probe", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def figures(self, since: float) -> dict[str, Any]:
        after = [s for s in self.samples if s[0] >= since]
        failed = [s for s in after if not s[1]]
        outage = None
        if failed:
            recovered = [s for s in after if s[1] and s[0] > failed[-1][0]]
            outage = (recovered[0][0] if recovered else after[-1][0]) - failed[0][0]
        return {"probe_requests": len(after), "probe_failures": len(failed),
                "outage_s": None if outage is None else round(outage, 3)}

    def served_by_after(self, moment: float) -> list[str]:
        return sorted({s[2] for s in self.samples if s[0] >= moment and s[1] and s[2]})


@dataclass
class Moments:
    """When things happened in a drill (``time.monotonic()``; ``*_wall``: epoch seconds)."""

    per_function: dict[str, float | None]  # seconds from the fault to verified
    fault: float | None = None
    fault_wall: float | None = None
    detected: float | None = None
    recovered: float | None = None  # every function verified
    replica_wall: float | None = None

    def record_recovery(self, verified_at: dict[str, float | None]) -> None:
        assert self.fault is not None
        for name, at in verified_at.items():
            self.per_function[name] = None if at is None else at - self.fault
        done = [at for at in verified_at.values() if at is not None]
        self.recovered = max(done) if done and len(done) == len(verified_at) else None

    def figures(self, data_at_risk: bool) -> dict[str, Any]:
        if self.fault is None:
            return {}
        rpo = None
        if data_at_risk and self.replica_wall is not None and self.fault_wall is not None:
            rpo = round(max(0.0, self.fault_wall - self.replica_wall), 3)
        return {
            "detection_s": rounded(self.detected - self.fault if self.detected else None),
            "rto_s": rounded(self.recovered - self.fault if self.recovered else None),
            "rto_from_detection_s": rounded(self.recovered - self.detected
                                           if self.recovered and self.detected else None),
            "rpo_s": rpo,
        }


@dataclass
class Drill:
    """One drill of one scenario against the lab the continuity plan points at."""

    ctx: Continuity
    lab: Lab
    scenario: str
    restore: bool = True
    progress: Callable[[str], None] = lambda _m: None
    timeline: Timeline = field(default_factory=Timeline)
    problems: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    failover_figures: dict[str, Any] = field(default_factory=dict)

    def run(self) -> Outcome:
        """Run the drill; returns its outcome (exit 0 targets met, 10 missed, 9 failed)."""
        if self.scenario not in SCENARIOS:
            raise InputError(f"unknown drill scenario {self.scenario!r}",
                             hint="scenarios: " + ", ".join(SCENARIOS))
        state, settings = self._preconditions()
        plan = self.ctx.plan
        record = self.ctx.journal.begin_continuity("drill", plan.service, plan.environment,
                                                   {"scenario": self.scenario})
        wall_start = datetime.now(UTC)
        self.started = time.monotonic()
        self._mark(f"drill {record} ({self.scenario}) started")
        moments = Moments({f.name: None for f in plan.functions})
        try:
            measures = self._under_load(record, state, settings, moments)
            if self.restore:
                self._restore(state)
        finally:
            self.ctx.close()  # the ssh masters of the replication and checks
        return self._finish(record, wall_start, moments, measures)

    def _under_load(self, record: int, state: LabState, settings: DrillSettings,
                    moments: Moments) -> dict[str, Any]:
        """Replicate, start the load, inject the fault, detect it, recover; measure."""
        load_run = LoadRun(settings.locustfile, self.ctx.lb_url, settings.users,
                           settings.spawn_rate, 3600, self.ctx.env.state_dir / "drills" /
                           str(record), "load")
        probe, locust, measures = Probe(self.ctx), None, dict[str, Any]()
        try:
            replica = self.ctx.replicate()
            moments.replica_wall = datetime.fromisoformat(
                replica.detail["captured_at"]).timestamp()
            self._mark(f"replicated ({replica.detail.get('bytes')} bytes) to the backup site")
            locust = start_load(load_run)
            probe.start()
            self._mark(f"load started: Locust, {settings.users} users, through {self.ctx.lb_url}")
            time.sleep(settings.warmup)
            moments.fault, moments.fault_wall = time.monotonic(), time.time()
            self._mark(f"fault injected: {self._inject(state, settings)}")
            moments.detected = self._detect(settings)
            self._mark("fault detected by relctl's health polls"
                       if moments.detected else "fault NOT detected by the health polls")
            moments.record_recovery(self._recover(settings, moments.fault, moments.detected))
            self._mark("every critical function verified through the LB"
                       if moments.recovered else "some critical functions did NOT recover")
            time.sleep(settings.settle)
        except RelctlError as error:
            self.problems.append(error.message)
            self._mark(f"drill step failed: {error.message}")
        finally:
            probe.stop()
            if locust is not None:
                try:
                    stats = stop_load(load_run, locust)
                    measures.update(load_requests=stats.requests, load_failures=stats.failures)
                except RelctlError as error:
                    self.problems.append(error.message)
            self._mark("load stopped")
        measures.update(probe.figures(moments.fault or self.started))
        measures["served_by_after"] = probe.served_by_after(moments.recovered or time.monotonic())
        measures.update(moments.figures(self.scenario != "lb-backend-flap"))
        measures.update(self.failover_figures)
        return measures

    def _finish(self, record: int, wall_start: datetime, moments: Moments,
                measures: dict[str, Any]) -> Outcome:
        plan = self.ctx.plan
        targets = plan_logic.judge_targets(plan, moments.per_function, measures.get("rpo_s"))
        met = all(t.rto_met and t.rpo_met for t in targets)
        verdict = ("fail" if self.problems or not moments.recovered
                   else "pass" if met else "missed")
        report = {
            "id": record, "scenario": self.scenario, "fault": SCENARIOS[self.scenario],
            "service": plan.service, "environment": plan.environment,
            "started": wall_start.isoformat(), "verdict": verdict,
            "release": self._release(), "measures": measures,
            "targets": [t.__dict__ for t in targets], "timeline": self.timeline.events,
            "problems": self.problems, "restored": self.restore,
            "improvements": plan_logic.improvements(plan, targets, measures, self.problems),
            "max_failure_ratio": plan.drill.max_failure_ratio if plan.drill else None,
        }
        markdown = plan_logic.drill_markdown(report)
        out = self.ctx.env.state_dir / "drills" / str(record)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.md").write_text(markdown)
        (out / "report.xml").write_text(drill_junit_xml(report))
        report["files"] = {"markdown": str(out / "report.md"), "junit": str(out / "report.xml"),
                           "dr_plan": str(self._write_dr_plan(report))}
        self.ctx.journal.end_continuity(record, "ok" if verdict == "pass" else "failed",
                                        {"report": report}, report=markdown)
        code = {"pass": ExitCode.OK, "missed": ExitCode.TARGETS_MISSED}.get(
            verdict, ExitCode.CONTINUITY_FAILED)
        return Outcome("drill", record, verdict == "pass", int(code),
                       f"{self.scenario}: {verdict.upper()}; RTO "
                       f"{measures.get('rto_s')}s, RPO {measures.get('rpo_s')}s, "
                       f"{measures.get('load_failures', 0)} failed requests",
                       report, self.timeline.events, self.problems, markdown)

    # -- steps ---------------------------------------------------------------------------

    def _preconditions(self) -> tuple[LabState, DrillSettings]:
        state = self.lab.require()
        if self.ctx.env.inventory.resolve() != self.lab.layout.inventory.resolve():
            raise InputError("drills inject real faults: they run only against the staging "
                             f"lab ({self.lab.layout.inventory}), not {self.ctx.env.inventory}")
        if self.ctx.plan.drill is None:
            raise InputError(f"{self.ctx.plan_path}: the continuity plan has no drill: section",
                             hint="add drill: {locustfile: ...}")
        if self.scenario == "service-crash" and not self.ctx.plan.drill.process_match:
            raise InputError(f"{self.ctx.plan_path}: drill.process_match is needed to find "
                             "the service process for service-crash")
        down = [h for h in self.ctx.primaries if not self.ctx.healthy(h, 2)]
        if down:
            raise ContinuityError(f"the lab is not healthy before the drill: {', '.join(down)}"
                                  " do not answer", hint="relctl lab up; relctl failback")
        cold = [h for h in self.ctx.backups if not self.ctx.healthy(h, 2)]
        if cold:
            self.progress(f"backup site cold ({', '.join(cold)} not answering): a failover "
                          "will deploy the last good release there first")
        return state, self.ctx.plan.drill

    def _inject(self, state: LabState, settings: DrillSettings) -> str:
        active = self.ctx.primaries[0]
        if self.scenario == "site-loss":
            for host in self.ctx.primaries:
                processes.kill_host(state.processes[host])
            return f"killed {', '.join(self.ctx.primaries)}"
        if self.scenario == "host-loss":
            processes.kill_host(state.processes[active])
            return f"killed {active}"
        if self.scenario == "service-crash":
            assert settings.process_match is not None
            pids = processes.kill_in_host(state.processes[active], settings.process_match)
            if not pids:
                raise ContinuityError(f"no process matching {settings.process_match!r} on "
                                      f"{active}")
            return f"killed the service on {active} (pids {pids})"
        threading.Thread(target=self._flap, args=(active, settings.flaps), daemon=True).start()
        return f"{active} flapping {settings.flaps} times"

    def _flap(self, server: str, times: int) -> None:
        runtime, backend = self.ctx.runtime, self.ctx.plan.backend
        for _ in range(times):
            runtime.set_health(backend, server, "down")
            time.sleep(1.0)
            runtime.set_health(backend, server, "up")
            time.sleep(1.0)

    def _detect(self, settings: DrillSettings) -> float | None:
        """Poll the lost hosts' health until ``detect_failures`` polls in a row fail."""
        if self.scenario == "lb-backend-flap":
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                server = self.ctx.primaries[0]
                status = {s.server: s.status for s in self.ctx.runtime.servers()}
                if not str(status.get(server, "")).startswith("UP"):
                    return time.monotonic()
                time.sleep(settings.detect_interval)
            return None
        watched = (self.ctx.primaries if self.scenario == "site-loss"
                   else self.ctx.primaries[:1])
        failures, deadline = 0, time.monotonic() + 30
        while time.monotonic() < deadline:
            if not any(self.ctx.healthy(h, timeout=settings.detect_interval * 2)
                       for h in watched):
                failures += 1
                if failures >= settings.detect_failures:
                    return time.monotonic()
            else:
                failures = 0
            time.sleep(settings.detect_interval)
        return None

    def _recover(self, settings: DrillSettings, fault_at: float,
                 detected_at: float | None) -> dict[str, float | None]:
        """Returns when (monotonic) each critical function was verified again."""
        if self.scenario == "site-loss":
            begun = time.monotonic()
            outcome = failover(self.ctx, fault_at=fault_at, detected_at=detected_at)
            self.failover_figures = {"failover_id": outcome.record_id, **{
                k: outcome.figures.get(k) for k in ("preflight_s", "switch_s", "verify_s")}}
            self.timeline.events += [(round(begun - self.started + at, 3), f"failover: {what}")
                                     for at, what in outcome.timeline]
            self.problems += outcome.warnings
            return {n: None if at is None else begun + at
                    for n, at in outcome.figures["functions_at_s"].items()}
        verified = self.ctx.wait_functions(fault_at, self.ctx.plan.failover.verify_timeout)
        if self.scenario == "lb-backend-flap":
            time.sleep(2.0 * settings.flaps)  # let the flapping finish before judging
            verified = self.ctx.wait_functions(fault_at, self.ctx.plan.failover.verify_timeout)
        return {n: None if at is None else fault_at + at
                for n, at in verified["passed_at"].items()}

    def _restore(self, state: LabState) -> None:
        """Put the lab back as it was before the drill."""
        try:
            if self.scenario in ("site-loss", "host-loss"):
                self.lab.up(state.spec, lambda m: None)
                self._mark("lab hosts restarted (relctl lab up)")
            if self.scenario == "site-loss":
                outcome = failback(self.ctx)
                self._mark(f"failback {outcome.record_id}: {outcome.message}")
            elif self.scenario in ("host-loss", "service-crash"):
                self._restart(self.ctx.primaries[0])
            else:
                self.ctx.runtime.set_health(self.ctx.plan.backend, self.ctx.primaries[0],
                                            "up")
                self._mark(f"{self.ctx.primaries[0]} forced healthy again")
        except RelctlError as error:
            self.problems.append(f"restoring the lab: {error.message}")
            self._mark(f"lab NOT restored: {error.message}")
        finally:
            self.ctx.close()

    def _restart(self, host: str) -> None:
        good = self.ctx.last_good()
        if good is None:
            raise ContinuityError(f"cannot restart the service on {host}: no release marked "
                                  "good to deploy")
        self.ctx.deploy(good, [host], f"drill-restore-{host}")
        self._mark(f"{host} back on {good.name}")

    def _release(self) -> str | None:
        good = self.ctx.last_good()
        return good.name if good else None

    def _write_dr_plan(self, report: dict[str, Any]) -> Path:
        path = (self.ctx.env.state_dir / "continuity" /
                f"{self.ctx.plan.service}-{self.ctx.plan.environment}-dr-plan.md")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(plan_logic.dr_plan_markdown(
            self.ctx.plan, release=report["release"], hosts=self.ctx.inventory.groups,
            last_drill=report, generated=datetime.now(UTC).isoformat(timespec="seconds")))
        return path

    def _mark(self, what: str) -> None:
        self.timeline.add(time.monotonic() - self.started, what)
        self.progress(what)

