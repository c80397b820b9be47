"""Results of verification gates, as the engine and the journal see them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Outcome = Literal["pass", "fail", "inconclusive"]


IDEMPOTENT_METHODS = ("GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE")
"""RFC 9110 section 9.2.2: a request with one of these methods may be sent again."""


@dataclass(frozen=True)
class Samples:
    """The requests one side of a canary analysis answered (as the load balancer named the
    server): each success's latency (ms), and the failures."""

    latencies_ms: list[float] = field(default_factory=list)
    failures: int = 0

    @property
    def requests(self) -> int:
        return len(self.latencies_ms) + self.failures

    @property
    def failure_ratio(self) -> float:
        return self.failures / self.requests if self.requests else 0.0

    def merged(self, other: Samples) -> Samples:
        return Samples([*self.latencies_ms, *other.latencies_ms], self.failures + other.failures)

    def figures(self) -> dict[str, Any]:
        ordered = sorted(self.latencies_ms)

        def pct(q: float) -> float | None:
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1) \
                if ordered else None
        return {"requests": self.requests, "failures": self.failures,
                "p50_ms": pct(0.5), "p95_ms": pct(0.95), "p99_ms": pct(0.99)}


@dataclass(frozen=True)
class LoadStats:
    """Aggregated figures of one Locust run."""

    requests: int
    failures: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    rps: float
    by_method: dict[str, tuple[int, int]] = field(default_factory=dict, compare=False)
    """HTTP method -> (requests, failures), from Locust's per-request rows."""

    @property
    def failure_ratio(self) -> float:
        return self.failures / self.requests if self.requests else 0.0

    def split(self) -> dict[str, int]:
        """Requests and failures split into idempotent methods (safe to retry) and not."""
        idem = [v for m, v in self.by_method.items() if m in IDEMPOTENT_METHODS]
        other = [v for m, v in self.by_method.items() if m not in IDEMPOTENT_METHODS]
        return {"load_requests_idempotent": sum(r for r, _ in idem),
                "load_failures_idempotent": sum(f for _, f in idem),
                "load_requests_non_idempotent": sum(r for r, _ in other),
                "load_failures_non_idempotent": sum(f for _, f in other)}

    def figures(self) -> dict[str, float]:
        """The figures as a flat dict, for the journal and reports."""
        return {"requests": self.requests, "failures": self.failures, "p50_ms": self.p50_ms,
                "p95_ms": self.p95_ms, "p99_ms": self.p99_ms, "rps": self.rps,
                "failure_ratio": round(self.failure_ratio, 4)}


@dataclass(frozen=True)
class CheckResult:
    """What a testinfra run found."""

    tests: int
    failures: int
    skipped: int
    junit: Path
    failed: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Verdict:
    """A gate's outcome and why."""

    outcome: Outcome
    reasons: list[str]

    @property
    def passed(self) -> bool:
        return self.outcome == "pass"
