"""Load gate verdicts: absolute thresholds, the baseline ratio and its noise allowance."""

from __future__ import annotations

from controller.models.gates import LoadStats
from controller.models.manifest import LoadThresholds
from controller.planning.gates import judge_load

CRITERIA = LoadThresholds(p95_ms=300, max_failure_ratio=0.01, min_rps=5, p95_vs_baseline=1.3,
                          min_requests=20)


def stats(p95_ms: float, requests: int = 200, failures: int = 0, rps: float = 50) -> LoadStats:
    return LoadStats(requests, failures, p95_ms / 2, p95_ms, p95_ms * 1.5, rps)


def test_a_few_milliseconds_over_the_ratio_is_noise_not_a_regression() -> None:
    assert judge_load(CRITERIA, stats(8), stats(6)).outcome == "pass"


def test_a_real_slowdown_fails_against_the_baseline() -> None:
    verdict = judge_load(CRITERIA, stats(120), stats(10))
    assert verdict.outcome == "fail"
    assert verdict.reasons == ["p95 120 ms > 1.3 x baseline 10 ms"]


def test_absolute_thresholds_fail_on_their_own() -> None:
    verdict = judge_load(CRITERIA, stats(510, failures=10, rps=2), None)
    assert verdict.outcome == "fail" and len(verdict.reasons) == 3


def test_too_few_requests_is_inconclusive() -> None:
    assert judge_load(CRITERIA, stats(5, requests=3), stats(5)).outcome == "inconclusive"
