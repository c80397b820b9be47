"""The release engine: a state machine over the journal.

    sign-offs required by the environment (else refuse: nothing touched) -> lock ->
    notice "start" -> Locust baseline -> snapshot (all targets) -> for each batch (canary first):
        apply playbooks -> testinfra gate
    -> Locust candidate vs baseline -> released
    any failure after the first change -> restore the snapshot on every touched host,
        verify it, re-run the checks on the restored state -> rolled back (bad release)

Every step is written to the journal before it starts and after it ends, so a killed
controller leaves a record that ``resume`` turns into a verified rollback. The end sends a
"success" or "rollback" notice; a notice channel that fails is journaled, never fatal.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.adapters.ansible import (
    PlaybookRun,
    TaskEvent,
    failure_summary,
    run_playbook,
    strategy_environment,
)
from controller.engine.admission import refuse_bad_release
from controller.engine.canary import CanaryRun, restore_weights
from controller.engine.cancel import Cancellation, Interrupted
from controller.engine.children import JournalChildren, orphan_connections
from controller.engine.dry_run import check_mode
from controller.engine.environment import Environment
from controller.engine.gates import GateRunner
from controller.engine.outcome import ReleaseOutcome
from controller.engine.phases import PhaseScope, Progress
from controller.engine.restored import RestoredHosts
from controller.engine.resumption import (
    ResumeRefusedError,
    close_stale_phases,
    forward_refusal,
    where_stopped,
)
from controller.engine.server_data import add_database_reports, check_databases
from controller.engine.signoff import approvals_line, require_signoffs
from controller.engine.snapshots import Snapshots
from controller.errors import ExitCode, RelctlError, RollbackRefusedError
from controller.journal import Journal, ReleaseRecord, current_holder
from controller.models.gates import LoadStats
from controller.models.manifest import Manifest
from controller.models.notify import NoticeEvent
from controller.notify import Notifier, journal_deliveries
from controller.planning.release import ReleasePlan, plan_release
from controller.reports.catch_up import DataReports, rollback_detail

TOUCHED_STATES = ("applying", "applied", "verified", "failed")
OUTCOME_NOTICES: dict[str, tuple[NoticeEvent, str]] = {  # final state -> notice, status
    "released": ("success", ""),
    "rolled_back": ("rollback", ""),
    "failed": ("rollback", "not rolled back: the new version stays while operations fix it"),
    "rollback_failed": ("rollback", "the rollback failed: the service may be degraded and "
                                    "operations are restoring it"),
}


class GateFailed(Exception):  # noqa: N818 - a signal inside the engine, never raised out
    """A playbook or gate failed after a change: roll back."""


@dataclass
class ReleaseEngine:
    """Runs one manifest against one environment, recording everything in the journal."""

    manifest: Manifest
    env: Environment
    journal: Journal
    progress: Progress = lambda _msg: None
    notifier: Notifier | None = None  # None: the manifest's notify section (or silence)
    approval_wait: float | None = None  # None: the manifest's signoff.wait
    on_task: Callable[[TaskEvent], None] | None = None  # every task on every host (live view)
    force: bool = False  # apply a release the journal marks bad
    cancel: Cancellation = field(default_factory=Cancellation)  # set by SIGTERM/SIGINT/SIGHUP
    # The ssh connections a cut-short playbook ran over: what it left on the hosts is
    # stopped before the restore (``agent/sessions.py``).
    cut_connections: set[str] = field(default_factory=set)
    # Only processes started since the cut-short playbook began (monotonic) are its own:
    # a service an earlier batch started over the same connection is not.
    cut_since: float | None = None

    def apply(self) -> ReleaseOutcome:
        """Refuse a bad release, check sign-offs, lock, snapshot, apply in batches, verify,
        commit or roll back."""
        refuse_bad_release(self.journal, self.manifest, force=self.force, progress=self.progress)
        signoffs = require_signoffs(self.journal, self.manifest, self.progress,
                                    wait_s=self.approval_wait)
        plan = self._plan()
        m = self.manifest
        self._check_prerequisites(plan)
        if m.strategy.analysis is not None and len(plan.batches) > 1:  # before any change
            CanaryRun(self.env, self.journal, 0, m, None, self.progress).preflight(
                plan.batches[0], [h for h in plan.hosts if h not in plan.batches[0]])
        self.journal.acquire_lock(m.environment, m.release)
        release_id = self.journal.start_release(
            name=m.release, version=m.version, service=m.service, environment=m.environment,
            manifest_path=m.source_path or Path(m.release), manifest_sha256=m.source_sha256 or "",
            operator=current_holder())
        try:
            if signoffs is not None:
                self.journal.log(release_id, approvals_line(signoffs))
            self._notify(release_id, "start", plan.hosts)
            return self._run(release_id, plan)
        except RelctlError as error:
            self.journal.set_release_state(release_id, "aborted", exit_code=int(error.exit_code),
                                           message=error.message)
            self._notify(release_id, "rollback", plan.hosts, error.message,
                         "stopped by an error; operations are checking the service")
            raise
        finally:
            self.journal.release_lock(m.environment, m.release)
            self.env.close_connections()

    def dry_run(self) -> ReleaseOutcome:
        """The apply playbooks in check mode with diff (``dry_run.py``): nothing changes."""
        plan = self._plan()
        self._check_prerequisites(plan)
        try:
            return check_mode(self.manifest, plan, self.cancel, self._on_event,
                              lambda playbook: self._playbook(playbook, plan.hosts, "dry-run",
                                                              check=True))
        finally:
            self.env.close_connections()

    def rollback(self, record: ReleaseRecord, reason: str,
                 interrupted: bool = False) -> ReleaseOutcome:
        """Restore the snapshot on every host the release touched (``rollback``/``resume``);
        ``interrupted``: its controller died or was stopped, so it is not marked bad."""
        plan = self._plan()
        touched = [h.host for h in self.journal.host_states(record.id)
                   if h.state in (*TOUCHED_STATES, "restored")]
        if plan.irreversible and record.state == "released":
            raise RollbackRefusedError(
                f"{record.name} converted {', '.join(plan.irreversible)}: a point of no "
                "return; restoring its snapshot would lose every change since",
                hint="roll forward with a fixed release (nothing was changed)")
        self.journal.acquire_lock(record.environment, record.name)
        try:
            close_stale_phases(self.journal, record.id)
            return self._roll_back(record.id, plan, touched, reason, time.monotonic(),
                                   bad=not interrupted)
        finally:
            self.journal.release_lock(record.environment, record.name)
            self.env.close_connections()

    def adopt_leftovers(self, record: ReleaseRecord) -> None:
        """Take over what a dead controller's children left on the hosts: the ssh
        connections their launchers noted when stopped, stopped on the hosts before the
        rollback or the next batch (``resume``), back to when the oldest of those children
        began (a child that ended by itself left nothing to stop)."""
        left = orphan_connections(self.journal, record.id, self.env.children_dir)
        self.cut_connections.update(left.connections)
        self.cut_since = time.monotonic() - left.age_s

    def stopped_at(self, record: ReleaseRecord) -> str:
        """Where an unfinished release stopped, for people (phase, state, hosts)."""
        return where_stopped(self.journal, record, self._plan()).describe(record)

    # -- the state machine ---------------------------------------------------------------

    def _run(self, release_id: int, plan: ReleasePlan) -> ReleaseOutcome:
        started = time.monotonic()
        snapshots = Snapshots(self.env, self.journal, release_id, plan)
        gates = GateRunner(self.env, self.journal, release_id, self.manifest)
        # The baseline load runs first: it writes through the service, and the snapshot
        # must hold those writes so that a rollback loses only the candidate's traffic.
        with self._phase(release_id, "baseline") as phase:
            baseline = gates.load("baseline")
            if baseline is not None:
                phase["figures"] = baseline.figures()  # resume --forward judges against it
        if self.cancel.requested():
            return self._finish(release_id, "aborted", ExitCode.INTERRUPTED,
                                f"{self.cancel.reason} before any host changed: nothing to "
                                "roll back", [], started)
        self._state(release_id, "snapshotting")
        with self._phase(release_id, "snapshot"):
            snapshots.take(plan.hosts, self._on_event)
        databases = (f" and {len(plan.server_data)} databases" if plan.server_data else "")
        self.progress(f"snapshot of {len(plan.agent_items)} items on {len(plan.hosts)} hosts"
                      f"{databases} taken and verified ({snapshots.store.root})")
        return self._roll_out(release_id, plan, gates, baseline, 1, started)

    def _roll_out(self, release_id: int, plan: ReleasePlan, gates: GateRunner,
                  baseline: LoadStats | None, first: int, started: float) -> ReleaseOutcome:
        """Apply and verify batches ``first``.. (1 is the canary), then the load gate;
        any failure rolls back every host of the batches up to it."""
        touched = [h for batch in plan.batches[:first - 1] for h in batch]
        try:
            self.cancel.check()
            self._state(release_id, "applying")
            for number, batch in enumerate(plan.batches[first - 1:], start=first):
                touched += batch
                self._apply_batch(release_id, plan, number, batch, gates)
                self.cancel.check()
            self._state(release_id, "verifying")
            self._load_gate(release_id, gates, baseline)
            self.cancel.check()
        except GateFailed as failure:
            return self._roll_back(release_id, plan, touched, str(failure), started)
        except Interrupted as stop:
            return self._roll_back(release_id, plan, touched, str(stop), started, bad=False)
        return self._finish(release_id, "released", ExitCode.OK,
                            f"{self.manifest.release} released to {len(plan.hosts)} hosts",
                            plan.hosts, started)

    def resume_forward(self, record: ReleaseRecord) -> ReleaseOutcome:
        """Continue a release whose controller died from its first batch not verified:
        same snapshot, same lock; refused when the snapshot is incomplete or the
        manifest changed since (``ResumeRefusedError``: nothing touched)."""
        plan = self._plan()
        stop = where_stopped(self.journal, record, plan)
        refusal = forward_refusal(self.journal, record, self.manifest, plan, stop)
        if refusal:
            raise ResumeRefusedError(f"cannot resume {record.name} forward: {refusal}",
                                     hint="relctl resume (without --forward) rolls it back")
        self.journal.acquire_lock(record.environment, record.name)
        started = time.monotonic()
        try:
            close_stale_phases(self.journal, record.id)
            if self.cut_connections:  # the dead controller's task in flight: stopped first
                left = self._stop_remote_leftovers(
                    Snapshots(self.env, self.journal, record.id, plan), plan.hosts, started)
                self.journal.log(record.id, "stopped what the dead controller left on the "
                                 f"hosts: {sum(map(len, left.values()))} process(es)")
            self.journal.log(record.id, f"resumed forward from batch {stop.first_batch}")
            self.progress(f"resuming {record.name} forward from batch {stop.first_batch} "
                          f"of {len(plan.batches)} (snapshot of release {record.id})")
            gates = GateRunner(self.env, self.journal, record.id, self.manifest)
            return self._roll_out(record.id, plan, gates, stop.baseline, stop.first_batch,
                                  started)
        except RelctlError as error:
            self.journal.set_release_state(record.id, "aborted", exit_code=int(error.exit_code),
                                           message=error.message)
            raise
        finally:
            self.journal.release_lock(record.environment, record.name)
            self.env.close_connections()

    def _apply_batch(self, release_id: int, plan: ReleasePlan, number: int,
                     batch: list[str], gates: GateRunner) -> None:
        label = "canary" if number == 1 and self.manifest.strategy.canary else f"batch{number}"
        if label == "canary":
            self._window_before(release_id, plan, batch)
        for host in batch:
            self.journal.set_host_state(release_id, host, "applying")
        self.progress(f"{label}: applying to {', '.join(batch)}")
        with self._phase(release_id, f"apply:{label}", batch) as phase:
            for playbook in self.manifest.playbooks.apply:
                run = self._playbook(playbook, batch, f"r{release_id}-{label}",
                                     release_id=release_id)
                result = run_playbook(run, self._on_event)
                phase["hosts"] = {h: ("failed" if h in result.failed_hosts else "ok")
                                  for h in batch}
                if result.stopped:
                    phase["stopped_pids"] = result.stopped
                if result.connections:
                    self.cut_connections.update(result.connections)
                    began = time.monotonic() - result.seconds
                    self.cut_since = min(began, self.cut_since or began)
                if result.cancelled or self.cancel.requested():
                    raise Interrupted(self.cancel.reason or f"{playbook.name} was cancelled "
                                      f"({result.status})")
                if not result.succeeded:
                    for host in result.failed_hosts:
                        self.journal.set_host_state(release_id, host, "failed")
                    raise GateFailed(f"{playbook.name} failed on {label}: "
                                     f"{failure_summary(result)}")
        for host in batch:
            self.journal.set_host_state(release_id, host, "applied",
                                        version_after=self.manifest.version)
        with self._phase(release_id, f"gate:testinfra:{label}", batch) as phase:
            verdict = gates.checks(batch, f"{label}", self.manifest.version)
            phase["verdict"] = verdict.outcome
            if not verdict.passed:
                raise GateFailed(f"testinfra {verdict.outcome} on {label}: "
                                 + "; ".join(verdict.reasons[:5]))
        if (label == "canary" and self.manifest.strategy.analysis is not None
                and len(plan.batches) > 1):
            self._analyse_canary(release_id, batch, [h for h in plan.hosts if h not in batch])
        for host in batch:
            self.journal.set_host_state(release_id, host, "verified")
        self.progress(f"{label}: testinfra passed on {', '.join(batch)}")

    def _window_before(self, release_id: int, plan: ReleasePlan, canary: list[str]) -> None:
        """``compare: window-before``: the old release under load, just before the
        canary's change (what the canary is judged against)."""
        analysis = self.manifest.strategy.analysis
        if analysis is None or analysis.compare != "window-before" or len(plan.batches) < 2:
            return
        with self._phase(release_id, "analysis:window-before", plan.hosts):
            try:
                self._canary_run(release_id).window_before(
                    canary, [h for h in plan.hosts if h not in canary])
            except RelctlError as error:
                raise GateFailed(f"canary analysis could not run: {error.message}") from error

    def _analyse_canary(self, release_id: int, canary: list[str], old: list[str]) -> None:
        """The canary judged under load against ``old`` (still on the old release); the
        canary's hosts stay ``applied`` until it passes, so a resume judges it again."""
        with self._phase(release_id, "analysis:canary", canary) as phase:
            try:
                judgement = self._canary_run(release_id).run(canary, old)
            except RelctlError as error:
                raise GateFailed(f"canary analysis could not run: {error.message}") from error
            phase.update(verdict=judgement.verdict, reasons=judgement.reasons)
            if judgement.verdict != "pass":
                raise GateFailed(f"canary analysis {judgement.verdict}: "
                                 + "; ".join(judgement.reasons[:3]))

    def _canary_run(self, release_id: int) -> CanaryRun:
        return CanaryRun(self.env, self.journal, release_id, self.manifest,
                         JournalChildren(self.journal, release_id, self.env.children_dir),
                         self.progress, check_cancel=self.cancel.check)

    def _load_gate(self, release_id: int, gates: GateRunner,
                   baseline: LoadStats | None) -> None:
        if self.manifest.gates.locust is None:
            return
        with self._phase(release_id, "gate:locust") as phase:
            try:
                candidate = gates.load("candidate")
            except RelctlError as error:
                raise GateFailed(f"Locust candidate run failed: {error.message}") from error
            assert candidate is not None
            verdict = gates.judge_load(candidate, baseline)
            phase.update(verdict=verdict.outcome, candidate=candidate.figures())
            self.progress(f"load gate {verdict.outcome}: {'; '.join(verdict.reasons)}")
            if not verdict.passed:
                raise GateFailed(f"Locust gate {verdict.outcome}: {'; '.join(verdict.reasons)}")

    def _roll_back(self, release_id: int, plan: ReleasePlan, touched: list[str],
                   reason: str, started: float, bad: bool = True) -> ReleaseOutcome:
        """Restore ``touched`` and re-check it; ``bad``: a gate or playbook failed (not a
        signal or a dead controller), so the release is marked bad."""
        self.progress(f"rolling back {', '.join(touched) or 'nothing'}: {reason}")
        self.journal.log(release_id, f"rollback: {reason}")
        try:  # a canary analysis its controller did not finish: the LB's weights first
            restore_weights(self.env, release_id, self.progress)
        except (RelctlError, OSError, ValueError) as error:
            self.journal.log(release_id, f"canary analysis weights NOT put back: {error}")
        if plan.irreversible and touched:
            self.journal.set_release_state(release_id, "failed")
            message = (f"{reason}. Rollback refused: {', '.join(plan.irreversible)} is a point "
                       "of no return once converted; roll forward with a fixed release")
            return self._finish(release_id, "failed", ExitCode.ROLLBACK_FAILED, message,
                                touched, started)
        self._state(release_id, "rolling_back")
        snapshots = Snapshots(self.env, self.journal, release_id, plan)
        with self._phase(release_id, "rollback", touched) as phase:
            if touched and self.cut_connections:
                phase["stopped_on_hosts"] = self._stop_remote_leftovers(snapshots, touched,
                                                                        started)
            result = snapshots.restore(touched, self._on_event) if touched else None
            phase["hosts"] = touched
            if result is not None:
                phase["restored"] = {h: result.how(h) for h in touched if h in
                                     result.replies and h not in result.failed_hosts}
                phase["databases"] = result.databases
                phase["uploaded_objects"] = result.uploaded
                phase["data"] = result.data()
                phase["writes_refused_s"] = result.writes_refused()
                add_database_reports(phase, self.journal, release_id, result.seconds,
                                     self.manifest.items)
        restored = RestoredHosts(self.env, self.journal, release_id, self.manifest,
                                 self.progress)
        if phase.get("data"):
            restored.report_data(phase["data"], phase["writes_refused_s"])
        if result is not None and not result.succeeded:
            return self._finish(release_id, "rollback_failed", ExitCode.ROLLBACK_FAILED,
                                f"{reason}. Restore FAILED: {result.summary()}",
                                touched, started)
        runs_now = restored.recheck(
            {host: snapshots.previous_version(host) for host in touched})
        for host, version in runs_now.items():  # "version after" is what the host runs now
            self.journal.set_host_state(release_id, host, "restored", version_after=version)
        if bad:
            self.journal.mark_bad(release_id, reason)
        else:
            self.journal.log(release_id, f"interrupted, not marked bad: {reason}")
        state = "rolled back" if bad else "interrupted and rolled back"
        return self._finish(release_id, "rolled_back", ExitCode.ROLLED_BACK,
                            f"{state}: {reason}", touched, started)

    # -- helpers -------------------------------------------------------------------------

    def _stop_remote_leftovers(self, snapshots: Snapshots, hosts: list[str],
                               started: float) -> dict[str, list[str]]:
        """Stop what a cut-short playbook left running on ``hosts`` (its task in flight
        goes on after the ssh connection closes) before anything is restored."""
        age = time.monotonic() - (self.cut_since if self.cut_since is not None else started)
        stopped = snapshots.stop_sessions(hosts, sorted(self.cut_connections), age)
        for host, lines in stopped.items():
            if lines:
                self.progress(f"  {host}: stopped {len(lines)} process(es) the cancelled "
                              f"playbook left running: {'; '.join(lines)[:300]}")
        return stopped


    def _check_prerequisites(self, plan: ReleasePlan) -> None:
        """Log in to every server-side data item, and find the playbooks' strategy: a
        clear error before anything runs."""
        check_databases(plan.server_data, self.progress)
        strategy_environment(self.manifest.playbooks.strategy)

    def _plan(self) -> ReleasePlan:
        return plan_release(self.manifest, self.env.hosts(self.manifest.targets))

    def _playbook(self, playbook: Any, hosts: list[str], label: str,
                  check: bool = False, release_id: int | None = None) -> PlaybookRun:
        children = (JournalChildren(self.journal, release_id, self.env.children_dir)
                    if release_id is not None else None)
        return PlaybookRun(playbook=playbook, inventory=self.env.inventory,
                           ansible_cfg=self.env.ansible_cfg, runs_dir=self.env.runs_dir,
                           extravars=dict(self.manifest.extravars), limit=",".join(hosts),
                           check=check, label=label, children=children,
                           cancel=self.cancel.requested,
                           strategy=self.manifest.playbooks.strategy)

    def _on_event(self, event: TaskEvent) -> None:
        if self.on_task is not None:
            self.on_task(event)
        if event.outcome in ("failed", "unreachable"):
            self.progress(f"  {event.host}: {event.task}: {event.outcome} {event.message}")

    def _state(self, release_id: int, state: Any) -> None:
        self.journal.set_release_state(release_id, state)

    def _phase(self, release_id: int, name: str,
               hosts: list[str] | None = None) -> PhaseScope:
        return PhaseScope(self.journal, release_id, name, self.progress, hosts)

    def _notify(self, release_id: int, event: NoticeEvent, hosts: list[str],
                reason: str = "", status: str = "") -> None:
        """Tell users; each delivery is journaled, and a failed one never fails the release."""
        notifier = self.notifier or Notifier.for_manifest(self.manifest)
        deliveries = notifier.announce(self.manifest, event, hosts=hosts, reason=reason,
                                       status=status)
        journal_deliveries(self.journal, release_id, deliveries)
        for delivery in deliveries:
            self.progress(delivery.summary())

    def _finish(self, release_id: int, state: Any, code: ExitCode, message: str,
                hosts: list[str], started: float) -> ReleaseOutcome:
        self.journal.set_release_state(release_id, state, exit_code=int(code), message=message)
        if state in OUTCOME_NOTICES:
            event, status = OUTCOME_NOTICES[state]
            self._notify(release_id, event, hosts, message.split(": ", 1)[-1], status)
        gates = [{"phase": g.phase, "kind": g.kind, "verdict": g.verdict, "figures": g.figures}
                 for g in self.journal.gate_results(release_id)]
        recorded = self.journal.phases(release_id)
        phases = [{"name": p.name, "state": p.state, "seconds": p.seconds} for p in recorded]
        data: DataReports = rollback_detail(recorded).get("data", {})
        return ReleaseOutcome(self.manifest.release, release_id, state, int(code), message,
                              hosts, time.monotonic() - started, gates, phases, data)
