"""Canary analysis: the canary batch judged under load, against the hosts still on the old
release in the same seconds, before the next batch gets the release.

For each step of ``strategy.analysis`` (e.g. 10 %, then 50 %):

    weights     the canary's HAProxy servers get the step's share of the backend's traffic
                (runtime API ``set weight``; the others keep theirs)
    load        Locust through the load balancer for the step's seconds, with relctl's
                plugin: every request attributed to the server HAProxy names
    judge       the canary's requests against the old servers' (planning/judge.py); an
                inconclusive step runs once more, its samples added; still inconclusive
                fails, or waits for a person's sign-off (``on_inconclusive``)
    journal     the step's samples, percentiles and test statistics (a ``locust`` gate
                result of phase ``canary:stepN``)

An active/standby backend (``compare: window-before``) has no old server answering beside
the canary: ``window_before`` loads the old release just before the canary's change, and
each step gives the canary all the traffic (the old servers at weight 0), judged against
that window. The window's samples stay in the gate folder, so a resume judges against it.

Every server's weight is put back as it was, whatever happens: the weights found are
written to ``canary-weights.json`` in the release's gate folder before the first change,
and a controller that died mid-analysis leaves it for ``resume`` (rollback or forward)
to put them back (``restore_weights``). A failed step raises no error here: the caller
rolls back what has the new release (the canary alone).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from controller.adapters.ansible import read_inventory
from controller.adapters.children import ChildRecorder
from controller.adapters.haproxy import MAX_WEIGHT, RuntimeApi
from controller.adapters.locust import LoadRun, read_samples, run_load
from controller.engine.environment import Environment
from controller.engine.signoff import manifest_ref
from controller.errors import InputError, RelctlError
from controller.journal import Journal
from controller.models.durations import format_duration
from controller.models.gates import Samples
from controller.models.manifest import AnalysisStep, CanaryAnalysis, CanarySignoff, Manifest
from controller.planning.judge import Judgement, JudgeRules, judge

BEFORE = "canary-before"  # the label of the old release's window (compare: window-before)


def canary_weight(share: int, old_weights: list[int], canaries: int) -> int:
    """The weight each of ``canaries`` servers needs for ``share`` percent of a round-robin
    backend whose other servers weigh ``old_weights`` (at least 1, at most HAProxy's 256)."""
    total = sum(old_weights)
    wanted = share * total / ((100 - share) * canaries)
    return max(1, min(MAX_WEIGHT, round(wanted)))


@dataclass
class CanaryRun:
    """The canary analysis of one release."""

    env: Environment
    journal: Journal
    release_id: int
    manifest: Manifest
    children: ChildRecorder | None
    progress: Callable[[str], None]
    check_cancel: Callable[[], None] = lambda: None  # raises when the release must stop

    @property
    def analysis(self) -> CanaryAnalysis:
        found = self.manifest.strategy.analysis
        assert found is not None
        return found

    def run(self, canary: list[str], old: list[str]) -> Judgement:
        """Every step in turn; the first that does not pass ends it (its judgement)."""
        if not old:
            return Judgement("inconclusive", ["no host on the old release to compare the "
                                              "canary with (a single-batch release)"], {})
        restore_weights(self.env, self.release_id, self.progress)  # a dead run's, first
        api, backend = self._lb()
        names = {h: self.analysis.lb.servers.get(h, h) for h in [*canary, *old]}
        saved = {names[h]: api.weight(backend, names[h]) for h in [*canary, *old]}
        saved_file = weights_file(self.env, self.release_id)
        saved_file.parent.mkdir(parents=True, exist_ok=True)
        saved_file.write_text(json.dumps({"endpoint": api.endpoint, "backend": backend,
                                          "weights": saved}))
        before = (self._window([names[h] for h in [*canary, *old]])
                  if self.analysis.compare == "window-before" else None)
        judgement = Judgement("inconclusive", ["no step ran"], {})
        try:
            for number, step in enumerate(self.analysis.steps, start=1):
                if before is None:
                    weight = canary_weight(step.weight, [saved[names[h]] for h in old],
                                           len(canary))
                else:  # the canary takes it all: the old servers drained
                    weight = max(1, *(saved[names[h]] for h in canary))
                    for host in old:
                        api.set_weight(backend, names[host], 0)
                for host in canary:
                    api.set_weight(backend, names[host], weight)
                self.progress(f"canary analysis step {number}: {', '.join(canary)} at weight "
                              f"{weight} (~{step.weight} % of the traffic) for "
                              f"{step.duration_s:g} s")
                judgement = self._step(number, step, [names[h] for h in canary],
                                       [names[h] for h in old], weight, before)
                self.progress(f"canary analysis step {number}: {judgement.verdict}: "
                              + "; ".join(judgement.reasons))
                if judgement.verdict == "inconclusive" and isinstance(
                        self.analysis.on_inconclusive, CanarySignoff):
                    judgement = self._ask(number, judgement, self.analysis.on_inconclusive)
                if judgement.verdict != "pass":
                    break
        finally:
            for server, was in saved.items():
                api.set_weight(backend, server, was)
            saved_file.unlink()
        return judgement

    def window_before(self, canary: list[str], old: list[str]) -> None:
        """``compare: window-before``: the old release under load for the first step's
        seconds, just before the canary's change (kept in the gate folder)."""
        seconds = self.analysis.steps[0].duration_s
        if read_samples(self._spec(BEFORE, seconds)):
            # A resumed release: the canary may run the new release by now, so the window
            # taken before its change is kept, never taken again.
            self.progress("canary analysis: keeping the old release's window taken before "
                          "the canary's change")
            return
        self.progress(f"canary analysis: {seconds:g} s of load on the old release "
                      f"({', '.join([*canary, *old])}): the window the canary is judged "
                      "against")
        self._load(BEFORE, seconds)

    def _window(self, servers: list[str]) -> Samples:
        """The old release's window (``window_before``): what the backend's servers
        answered; empty when none was taken (then every step is inconclusive)."""
        return _merged(Samples(), read_samples(self._spec(BEFORE, 0)), servers)

    def _ask(self, number: int, judgement: Judgement, policy: CanarySignoff) -> Judgement:
        """An inconclusive step waits for a sign-off of ``policy.signoff`` given after it
        (``relctl signoff RELEASE --role ROLE``): pass when one comes, fail when the wait
        runs out."""
        release, ref = self.manifest.release, manifest_ref(self.manifest)
        known = {s.id for s in self.journal.signoffs(release)}
        self.journal.request_signoff(release, ref)
        self.journal.log(self.release_id, f"canary step {number} inconclusive: waiting up to "
                         f"{format_duration(policy.wait)} for a sign-off as {policy.signoff}")
        self.progress(f"canary analysis step {number} inconclusive: waiting up to "
                      f"{format_duration(policy.wait)} for a sign-off: relctl signoff "
                      f"{release} --role {policy.signoff} --by NAME")
        deadline = time.monotonic() + policy.wait
        while (left := deadline - time.monotonic()) > 0:
            self.check_cancel()
            given = [s for s in self.journal.signoffs(release) if s.id not in known
                     and s.role == policy.signoff and s.signed is not None
                     and (s.signed.environment, s.signed.sha256) == (ref.environment,
                                                                      ref.sha256)]
            if given:
                reason = (f"inconclusive, let go on by {given[0].by} ({policy.signoff} "
                          "sign-off)")
                self.journal.log(self.release_id, f"canary step {number}: {reason}")
                return Judgement("pass", [*judgement.reasons, reason], judgement.figures)
            time.sleep(min(1.0, left))
        return Judgement("fail", [*judgement.reasons, f"no {policy.signoff} sign-off within "
                                  f"{format_duration(policy.wait)}"], judgement.figures)

    def preflight(self, canary: list[str], old: list[str]) -> None:
        """Before any change: the LB's runtime API answers and its backend has a server
        for every host the analysis weighs; ``InputError`` (exit 2) naming what lacks."""
        api, backend = self._lb()
        try:
            found = {s.server for s in api.servers() if s.backend == backend}
        except RelctlError as error:
            raise InputError(f"strategy.analysis: {error.message}") from error
        if not found:
            raise InputError(f"strategy.analysis: HAProxy at {api.endpoint} has no backend "
                             f"{backend!r}; set strategy.analysis.lb.backend")
        names = self.analysis.lb.servers
        missing = [h for h in [*canary, *old] if names.get(h, h) not in found]
        if missing:
            raise InputError(f"strategy.analysis: backend {backend!r} has no server for "
                             f"{', '.join(missing)} (servers: {', '.join(sorted(found))}); "
                             "map them in strategy.analysis.lb.servers")

    def _lb(self) -> tuple[RuntimeApi, str]:
        lb = self.analysis.lb
        inventory = read_inventory(self.env.inventory, self.env.ansible_cfg)
        hosts = inventory.groups.get(lb.group) or []
        if not hosts:
            raise InputError(f"strategy.analysis.lb.group {lb.group!r} has no host in "
                             f"{self.env.inventory}")
        return (RuntimeApi(f"{inventory.addresses[hosts[0]]}:{lb.runtime_api_port}"),
                lb.backend or self.manifest.service)

    def _step(self, number: int, step: AnalysisStep, canary: list[str], old: list[str],
              weight: int, before: Samples | None) -> Judgement:
        """One step's load and verdict (run once more when inconclusive); journaled. The
        canary is judged against ``before`` (window-before) or the old servers' answers."""
        rules = replace(self._rules(), share=step.weight / 100 if before is None else None)
        seen = {"canary": Samples(), "old": before or Samples()}
        unnamed = 0
        judgement = Judgement("inconclusive", [], {})
        for attempt in (1, 2):
            by_server = self._load(f"canary-step{number}-{attempt}", step.duration_s)
            unnamed += sum(s.requests for name, s in by_server.items()
                           if name not in canary and name not in old)
            seen = {"canary": _merged(seen["canary"], by_server, canary),
                    "old": seen["old"] if before is not None
                    else _merged(seen["old"], by_server, old)}
            judgement = judge(seen["old"], seen["canary"], rules)
            if judgement.verdict != "inconclusive":
                break
        if unnamed and not seen["canary"].requests:
            judgement = Judgement("inconclusive", [
                *judgement.reasons, f"{unnamed} answers named no server of the backend: does "
                "the LB set X-Served-By (http-response set-header X-Served-By %s)?"],
                judgement.figures)
        figures: dict[str, Any] = {**judgement.figures, "step": number, "weight": weight,
                                   "compare": self.analysis.compare,
                                   "share_percent": step.weight, "attempts": attempt,
                                   "canary_servers": canary, "old_servers": old,
                                   "unattributed": unnamed, "reasons": judgement.reasons}
        self.journal.add_gate_result(self.release_id, phase=f"canary:step{number}",
                                     kind="locust", verdict=judgement.verdict, figures=figures)
        return Judgement(judgement.verdict, [f"step {number} ({step.weight} %): {r}"
                                             for r in judgement.reasons], figures)

    def _spec(self, label: str, seconds: float) -> LoadRun:
        analysis, gate = self.analysis, self.manifest.gates.locust
        locustfile = analysis.locustfile or (gate.locustfile if gate else None)
        url = analysis.url or (gate.url if gate else None) or self.env.lb_url
        if locustfile is None or not url:
            raise InputError("the canary analysis has no locustfile or no url (and no lab "
                             "load balancer is known)")
        return LoadRun(locustfile, url, analysis.users, analysis.spawn_rate, seconds,
                       self.env.gate_dir(self.release_id), label, children=self.children,
                       samples=True)

    def _load(self, label: str, seconds: float) -> dict[str, Samples]:
        run = self._spec(label, seconds)
        try:
            run_load(run)
        except RelctlError as error:
            raise InputError(f"the canary analysis's load did not run: {error.message}") \
                from error
        return read_samples(run)

    def _rules(self) -> JudgeRules:
        analysis, gate = self.analysis, self.manifest.gates.locust
        return JudgeRules(alpha=analysis.alpha, effect=analysis.effect,
                          slack_ms=analysis.slack_ms, min_samples=analysis.min_samples,
                          p95_ms=gate.thresholds.p95_ms if gate else None,
                          max_failure_ratio=gate.thresholds.max_failure_ratio if gate else None)


def weights_file(env: Environment, release_id: int) -> Path:
    """Where a running analysis keeps the weights it found (until it puts them back)."""
    return env.gate_dir(release_id) / "canary-weights.json"


def restore_weights(env: Environment, release_id: int,
                    progress: Callable[[str], None]) -> None:
    """Put back the weights an analysis of ``release_id`` found, when its controller died
    before it did (``weights_file`` is still there); ``LabError`` when HAProxy refuses."""
    path = weights_file(env, release_id)
    if not path.is_file():
        return
    saved = json.loads(path.read_text())
    api = RuntimeApi(str(saved["endpoint"]))
    for server, weight in dict(saved["weights"]).items():
        api.set_weight(str(saved["backend"]), str(server), int(weight))
    path.unlink()
    progress(f"canary analysis: weights put back as they were ({len(saved['weights'])} "
             "servers)")


def _merged(seen: Samples, by_server: dict[str, Samples], servers: list[str]) -> Samples:
    for server in servers:
        seen = seen.merged(by_server.get(server, Samples()))
    return seen
