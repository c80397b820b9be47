"""After a rollback: what became of each host's data, and every restored host re-checked.

The data: said on the terminal, journaled, and written to
``STATE_DIR/rollbacks/<release>/catch-up.{md,json}``. The re-check: with the testinfra
gate of the version the snapshot's artifact link named, else with the gates of the
environment's previous good release (its manifest as it ran); a host neither can re-check
is said to be NOT re-checked, with why (terminal, journal, a skipped phase).
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.engine.environment import Environment
from controller.engine.gates import GateRunner
from controller.engine.phases import PhaseScope, Progress
from controller.errors import RelctlError
from controller.journal import Journal
from controller.manifest_loader import load_manifest
from controller.models.manifest import Manifest
from controller.reports.catch_up import DataReports, summary_lines, write_catch_up


@dataclass(frozen=True)
class RestoredHosts:
    """The hosts one rollback restored."""

    env: Environment
    journal: Journal
    release_id: int
    manifest: Manifest
    progress: Progress

    def report_data(self, data: DataReports, writes_refused: dict[str, float | None]
                    ) -> None:
        """Say, journal and write down what the rollback did with each host's data."""
        folder = self.env.state_dir / "rollbacks" / self.manifest.release
        path = write_catch_up(folder, self.manifest.release, data, writes_refused)
        for line in summary_lines(data):
            self.progress(line)
            self.journal.log(self.release_id, f"data: {line}")
        for host, seconds in sorted(writes_refused.items()):
            if seconds is not None and host in data:
                self.progress(f"{host}: writes refused for {seconds:.2f} s (services stopped)")
        self.progress(f"catch-up report: {path}")

    def recheck(self, linked: dict[str, str | None]) -> dict[str, str | None]:
        """Re-check every restored host: against the version its snapshot's artifact
        link named, else against the environment's previous good release (its manifest's
        gates); a host neither can re-check is said so, with why. What each host runs
        now (None: not known)."""
        gates = GateRunner(self.env, self.journal, self.release_id, self.manifest)
        runs_now = dict(linked)
        by_version: dict[str, list[str]] = {}
        for host, previous in linked.items():
            if previous:
                by_version.setdefault(previous, []).append(host)
        runners: dict[str, GateRunner] = {}
        unknown = sorted(h for h, v in linked.items() if not v)
        if unknown:
            previous_gates, version, why = self._previous_release_gates()
            if previous_gates is None or version is None:
                self._not_rechecked(unknown, why)
            else:
                by_version.setdefault(version, []).extend(unknown)
                runners[version] = previous_gates
                runs_now.update(dict.fromkeys(unknown, version))
        for version, hosts in by_version.items():
            runner = runners.get(version, gates)
            with PhaseScope(self.journal, self.release_id, f"gate:testinfra:restored-{version}",
                            self.progress) as phase:
                verdict = runner.checks(hosts, f"restored-{version}", version)
                phase["verdict"] = verdict.outcome
                phase["hosts"] = hosts
            self.progress(f"restored state checks on {', '.join(hosts)} ({version}): "
                          f"{verdict.outcome}")
        return runs_now

    def _previous_release_gates(self) -> tuple[GateRunner | None, str | None, str]:
        """The gates of the environment's last good release before this one, loaded from
        its manifest as it ran (same sha256); or None and why not."""
        m = self.manifest
        previous = self.journal.last_good_release(m.service, m.environment)
        if previous is None or previous.id == self.release_id:
            return None, None, f"no earlier good release of {m.service} in {m.environment}"
        path = previous.manifest_path
        try:
            manifest = load_manifest(path)
        except RelctlError as error:
            return None, None, (f"the manifest of {previous.name} ({path}) cannot be read: "
                                f"{error.message}")
        if manifest.source_sha256 != previous.manifest_sha256:
            return None, None, f"the manifest of {previous.name} ({path}) changed since it ran"
        if not manifest.gates.testinfra:
            return None, None, f"{previous.name} has no testinfra gate"
        self.progress(f"re-checking restored hosts with {previous.name}'s gates "
                      f"({previous.version})")
        return GateRunner(self.env, self.journal, self.release_id, manifest), previous.version, ""

    def _not_rechecked(self, hosts: list[str], why: str) -> None:
        """Say (terminal, journal, report) that restored hosts could not be re-checked."""
        line = f"restored hosts {', '.join(hosts)} NOT re-checked: {why}"
        self.progress(line)
        self.journal.log(self.release_id, line)
        phase = self.journal.begin_phase(self.release_id, "gate:testinfra:restored")
        self.journal.end_phase(phase, "skipped", {"hosts": hosts, "not_rechecked": why},
                               seconds=0.0)
