"""The canary judge as pure code: known samples in, verdicts out."""

from __future__ import annotations

import random

import pytest

from controller.engine.canary import canary_weight
from controller.models.gates import Samples
from controller.planning.judge import JudgeRules, judge


def latencies(seed: int, count: int, median_ms: float, spread: float = 0.3) -> list[float]:
    """``count`` log-normal latencies around ``median_ms`` (what services show)."""
    rng = random.Random(seed)
    return [median_ms * rng.lognormvariate(0, spread) for _ in range(count)]


def test_a_canary_no_different_from_the_old_release_passes_every_time() -> None:
    rules = JudgeRules()
    verdicts = [judge(Samples(latencies(seed, 400, 12.0)),
                      Samples(latencies(seed + 1000, 400, 12.0)), rules).verdict
                for seed in range(50)]
    assert verdicts == ["pass"] * 50


def test_a_tiny_but_significant_shift_is_tolerated() -> None:
    """5,000 requests each, the canary 0.6 ms slower: significant, but small (effect
    size below the tolerance, shift below the slack): a pass, not a flapping gate."""
    result = judge(Samples(latencies(1, 5000, 12.0)), Samples(latencies(2, 5000, 12.6)),
                   JudgeRules())
    assert result.figures["latency"]["p"] < 0.01
    assert result.verdict == "pass", result.reasons


def test_a_slow_canary_fails_with_its_statistics() -> None:
    result = judge(Samples(latencies(1, 300, 12.0)), Samples(latencies(2, 300, 180.0)),
                   JudgeRules())
    assert result.verdict == "fail"
    assert "canary slower" in result.reasons[0]
    assert result.figures["latency"]["effect"] > 0.95
    assert result.figures["candidate"]["p50_ms"] > 100 > result.figures["baseline"]["p50_ms"]


def test_a_canary_that_fails_more_requests_fails() -> None:
    result = judge(Samples(latencies(1, 500, 12.0), failures=1),
                   Samples(latencies(2, 500, 12.0), failures=40), JudgeRules())
    assert result.verdict == "fail" and "canary fails more: 40/540" in result.reasons[0]


def test_too_few_samples_are_inconclusive() -> None:
    result = judge(Samples(latencies(1, 30, 12.0)), Samples(latencies(2, 30, 900.0)),
                   JudgeRules(min_samples=50))
    assert result.verdict == "inconclusive"
    assert "only 30 canary and 30 baseline samples" in result.reasons[0]


@pytest.mark.parametrize(("rules", "words"), [
    (JudgeRules(p95_ms=10.0), "canary p95"),
    (JudgeRules(max_failure_ratio=0.001), "canary failure ratio"),
])
def test_absolute_thresholds_stay_a_floor(rules: JudgeRules, words: str) -> None:
    same = latencies(1, 400, 12.0)
    result = judge(Samples(same, failures=2), Samples(list(same), failures=2), rules)
    assert result.verdict == "fail" and words in result.reasons[0]


@pytest.mark.parametrize(("share", "old", "canaries", "weight"), [
    (50, [100, 100], 1, 200),   # half of the traffic: as much as both old servers together
    (10, [100, 100], 1, 22),    # 22 / 222 = 9.9 %
    (50, [100, 100, 100, 100], 2, 200),
    (99, [100, 100], 1, 256),   # HAProxy's highest weight
    (1, [1], 5, 1),             # never 0: a weight of 0 would take the canary out
])
def test_the_canary_weight_gives_it_its_share(share: int, old: list[int], canaries: int,
                                              weight: int) -> None:
    assert canary_weight(share, old, canaries) == weight


def test_a_canary_that_does_not_keep_up_with_its_share_fails() -> None:
    """12 answers where a third of 680 were sent: slow, or taken out by its health checks."""
    rules = JudgeRules(min_samples=30, share=0.34)
    starved = judge(Samples(latencies(1, 670, 12.0)), Samples(latencies(2, 12, 900.0)), rules)
    assert starved.verdict == "fail" and "answered 12 of 682 requests" in starved.reasons[0]
    fair = judge(Samples(latencies(1, 440, 12.0)), Samples(latencies(2, 230, 12.0)), rules)
    assert fair.verdict == "pass", fair.reasons
