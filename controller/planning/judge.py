"""The canary judge: the canary's requests against the old release's, measured in the same
seconds, by statistics (SciPy) rather than by a ratio of two percentiles.

    judge(baseline, candidate, rules) -> Judgement

Per metric, as Kayenta does:

- latency: Mann-Whitney U (one-sided: is the canary slower?) on every successful
  request's latency. A difference fails only when it is significant (p < ``alpha``) *and*
  large: the probability that a canary request is slower than an old one (the common
  language effect size, U / (n1 n2)) reaches ``effect``, and the medians differ by more
  than ``slack_ms``. Thousands of requests make a 1 ms shift "significant"; the effect
  size and the slack keep that from failing a good release.
- errors: Fisher's exact test (one-sided) on failed and successful requests.
- a canary that answers under a third of the share its weight sends it, while the old
  hosts answer plenty, fails: it does not keep up (or its health checks took it out).
- too few samples on either side: ``inconclusive``.
- absolute thresholds (the Locust gate's p95 and failure ratio) stay as a floor.

Pure: samples in, verdict and its figures out.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, Literal

from controller.models.gates import Samples

JudgeVerdict = Literal["pass", "fail", "inconclusive"]
STARVED = 3  # a canary answering under a third of its share is not keeping up


@dataclass(frozen=True)
class JudgeRules:
    """How the judge decides (the manifest's ``strategy.analysis``)."""

    alpha: float = 0.01
    effect: float = 0.6
    slack_ms: float = 5.0
    min_samples: int = 50
    p95_ms: float | None = None  # floors: the Locust gate's absolute thresholds
    max_failure_ratio: float | None = None
    share: float | None = None  # the canary's share of the requests by its LB weight (0-1)


@dataclass(frozen=True)
class Judgement:
    """The verdict, why, and the test statistics behind it."""

    verdict: JudgeVerdict
    reasons: list[str]
    figures: dict[str, Any]


def judge(baseline: Samples, candidate: Samples, rules: JudgeRules) -> Judgement:
    """The canary (``candidate``) against the old release (``baseline``)."""
    figures: dict[str, Any] = {"baseline": baseline.figures(), "candidate": candidate.figures()}
    starved = _starved(baseline, candidate, rules)
    if starved:
        return Judgement("fail", [starved], figures)
    few = min(len(baseline.latencies_ms), len(candidate.latencies_ms))
    if few < rules.min_samples:
        return Judgement("inconclusive", [
            f"only {len(candidate.latencies_ms)} canary and {len(baseline.latencies_ms)} "
            f"baseline samples (fewer than {rules.min_samples})"], figures)
    reasons = [*_latency(baseline, candidate, rules, figures),
               *_errors(baseline, candidate, rules, figures),
               *_floors(candidate, rules)]
    if reasons:
        return Judgement("fail", reasons, figures)
    return Judgement("pass", [
        f"canary p50 {figures['candidate']['p50_ms']} ms vs {figures['baseline']['p50_ms']} "
        f"ms (effect {figures['latency']['effect']:.2f}, p {figures['latency']['p']:.3g}); "
        f"failures {candidate.failures}/{candidate.requests} vs "
        f"{baseline.failures}/{baseline.requests}"], figures)


def _starved(baseline: Samples, candidate: Samples, rules: JudgeRules) -> str | None:
    """The canary answered far fewer requests than its weight sends it while the old
    hosts answered plenty: it cannot keep up, or the LB took it out (health checks)."""
    if rules.share is None or baseline.requests < rules.min_samples:
        return None
    total = candidate.requests + baseline.requests
    answered = candidate.requests / total
    if answered >= rules.share / STARVED:
        return None
    return (f"the canary answered {candidate.requests} of {total} requests ({answered:.1%}) "
            f"where its weight sends it {rules.share:.0%}: it does not keep up, or the load "
            "balancer took it out")


def _latency(baseline: Samples, candidate: Samples, rules: JudgeRules,
             figures: dict[str, Any]) -> list[str]:
    from scipy import stats  # noqa: PLC0415 - SciPy costs 0.6 s to import: only when judging

    test = stats.mannwhitneyu(candidate.latencies_ms, baseline.latencies_ms,
                              alternative="greater", method="asymptotic")
    pairs = len(candidate.latencies_ms) * len(baseline.latencies_ms)
    effect = float(test.statistic) / pairs
    shift = statistics.median(candidate.latencies_ms) - statistics.median(baseline.latencies_ms)
    figures["latency"] = {"test": "mann-whitney-u", "u": float(test.statistic),
                          "p": float(test.pvalue), "effect": round(effect, 4),
                          "median_shift_ms": round(shift, 2)}
    if test.pvalue < rules.alpha and effect >= rules.effect and shift > rules.slack_ms:
        return [f"canary slower: median +{shift:.1f} ms, a canary request slower than an old "
                f"one with probability {effect:.2f} (≥ {rules.effect}), p {test.pvalue:.2g}"]
    return []


def _errors(baseline: Samples, candidate: Samples, rules: JudgeRules,
            figures: dict[str, Any]) -> list[str]:
    import numpy as np  # noqa: PLC0415 - as SciPy in _latency
    from scipy import stats  # noqa: PLC0415

    table = np.array([[candidate.failures, len(candidate.latencies_ms)],
                      [baseline.failures, len(baseline.latencies_ms)]])
    _odds, p_value = stats.fisher_exact(table, alternative="greater")
    figures["errors"] = {"test": "fisher-exact", "p": float(p_value)}
    if p_value < rules.alpha and candidate.failure_ratio > baseline.failure_ratio:
        return [f"canary fails more: {candidate.failures}/{candidate.requests} against "
                f"{baseline.failures}/{baseline.requests}, p {p_value:.2g}"]
    return []


def _floors(candidate: Samples, rules: JudgeRules) -> list[str]:
    found = []
    p95 = candidate.figures()["p95_ms"]
    if rules.p95_ms is not None and p95 is not None and p95 > rules.p95_ms:
        found.append(f"canary p95 {p95} ms > {rules.p95_ms:g} ms")
    if rules.max_failure_ratio is not None and candidate.failure_ratio > rules.max_failure_ratio:
        found.append(f"canary failure ratio {candidate.failure_ratio:.2%} > "
                     f"{rules.max_failure_ratio:.2%}")
    return found
