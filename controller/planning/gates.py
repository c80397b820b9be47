"""Verdicts of gates: pure comparisons of measured figures with the manifest's criteria."""

from __future__ import annotations

from typing import Protocol

from controller.models.gates import CheckResult, LoadStats, Verdict


class LoadCriteria(Protocol):
    """The load thresholds a manifest declares (see ``LoadThresholds``)."""

    p95_ms: float | None
    max_failure_ratio: float | None
    min_rps: float | None
    p95_vs_baseline: float | None
    p95_slack_ms: float
    min_requests: int


def judge_checks(result: CheckResult) -> Verdict:
    """Pass when tests ran and none failed; inconclusive when nothing ran."""
    if result.tests in (0, result.skipped):
        return Verdict("inconclusive", [f"no testinfra test ran (see {result.junit})"])
    if result.failures:
        return Verdict("fail", result.failed)
    return Verdict("pass", [f"{result.tests - result.skipped} checks passed"])


def judge_load(criteria: LoadCriteria, candidate: LoadStats,
               baseline: LoadStats | None) -> Verdict:
    """Compare the candidate run with absolute thresholds and with the baseline."""
    if candidate.requests < criteria.min_requests:
        return Verdict("inconclusive", [
            f"only {candidate.requests} requests measured (< {criteria.min_requests})"])
    reasons = _absolute_breaches(criteria, candidate) + _relative_breaches(
        criteria, candidate, baseline)
    if reasons:
        return Verdict("fail", reasons)
    return Verdict("pass", [f"p95 {candidate.p95_ms:.0f} ms, {candidate.rps:.1f} rps, "
                            f"failures {candidate.failure_ratio:.2%}"])


def _absolute_breaches(criteria: LoadCriteria, run: LoadStats) -> list[str]:
    reasons = []
    if criteria.p95_ms is not None and run.p95_ms > criteria.p95_ms:
        reasons.append(f"p95 {run.p95_ms:.0f} ms > {criteria.p95_ms:.0f} ms")
    if criteria.max_failure_ratio is not None and run.failure_ratio > criteria.max_failure_ratio:
        reasons.append(f"failure ratio {run.failure_ratio:.2%} > "
                       f"{criteria.max_failure_ratio:.2%}")
    if criteria.min_rps is not None and run.rps < criteria.min_rps:
        reasons.append(f"{run.rps:.1f} rps < {criteria.min_rps:.1f} rps")
    return reasons


def _relative_breaches(criteria: LoadCriteria, run: LoadStats,
                       baseline: LoadStats | None) -> list[str]:
    if criteria.p95_vs_baseline is None or baseline is None or baseline.requests == 0:
        return []
    # Ratios of a few milliseconds are noise (8 ms against 6 ms is not a regression):
    # the candidate must also be p95_slack_ms slower than the baseline to fail.
    limit = max(baseline.p95_ms * criteria.p95_vs_baseline,
                baseline.p95_ms + criteria.p95_slack_ms)
    if run.p95_ms > limit:
        return [f"p95 {run.p95_ms:.0f} ms > {criteria.p95_vs_baseline} x baseline "
                f"{baseline.p95_ms:.0f} ms"]
    return []
