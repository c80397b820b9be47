"""Warranty monitoring as data: when the next round runs, whether the release is still
the one in production, and what a sequence of round verdicts calls for.

    round verdicts ──decide──> continue | rollback | alert | done

A ``fail`` round is a breach at once; ``inconclusive`` rounds (nothing measured, too few
requests, a probe that did not run) are a breach only when ``INCONCLUSIVE_LIMIT`` of them
come in a row; ``skipped`` rounds (the environment was locked by another release) are not
judged and neither break nor extend a streak. A breach rolls back a reversible release and
raises an alert for one past a point of no return (or when rollback is switched off).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from controller.models.durations import format_duration

RoundVerdict = Literal["pass", "fail", "inconclusive", "skipped"]
Action = Literal["continue", "rollback", "alert", "done"]
Standing = Literal["live", "paused", "ended"]

INCONCLUSIVE_LIMIT = 2
LOAD_FIGURES = ("p95_ms", "rps", "failure_ratio")


@dataclass(frozen=True)
class Schedule:
    """How long and how often: rounds every ``every_s`` seconds for ``for_s`` seconds,
    or ``rounds`` rounds, whichever ends first (at least one of the two is set)."""

    every_s: float
    for_s: float | None = None
    rounds: int | None = None
    probe_s: float = 5.0  # 0: no Locust probe

    def __post_init__(self) -> None:
        if self.for_s is None and self.rounds is None:
            raise ValueError("a monitor needs a period (--for) or a number of rounds (--rounds)")
        if self.every_s <= 0:
            raise ValueError("the interval between rounds must be positive")

    def describe(self) -> str:
        """``every 5m, for 72h, probe 5s``."""
        parts = [f"every {format_duration(self.every_s)}"]
        if self.for_s is not None:
            parts.append(f"for {format_duration(self.for_s)}")
        if self.rounds is not None:
            parts.append(f"at most {self.rounds} round{'s' * (self.rounds != 1)}")
        parts.append(f"probe {format_duration(self.probe_s)}" if self.probe_s else "no probe")
        return ", ".join(parts)

    def planned_rounds(self) -> int | None:
        """How many rounds the schedule holds if every round is quick (None: no limit)."""
        by_period = int(self.for_s // self.every_s) + 1 if self.for_s is not None else None
        counts = [n for n in (by_period, self.rounds) if n is not None]
        return min(counts) if counts else None


@dataclass(frozen=True)
class RoundResult:
    """What one round found: its verdict, why, and the probe's figures (if it ran)."""

    number: int
    verdict: RoundVerdict
    reasons: tuple[str, ...] = ()
    load: dict[str, float] | None = None


@dataclass(frozen=True)
class Decision:
    """What to do after a round, and why."""

    action: Action
    reason: str = ""


@dataclass(frozen=True)
class Summary:
    """The counts and load figures of a monitor's rounds, for people and the journal."""

    rounds: int
    verdicts: dict[str, int]
    figures: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"rounds": self.rounds, "verdicts": self.verdicts, "figures": self.figures}


def next_round_at(schedule: Schedule, done: int, last_start: float | None,
                  now: float) -> float | None:
    """Seconds since the monitor began at which the next round starts; None when over.

    Rounds keep their interval from the previous start; a round that ran longer than the
    interval is followed at once (missed rounds are not caught up in a burst).
    """
    if schedule.rounds is not None and done >= schedule.rounds:
        return None
    at = now if last_start is None else max(last_start + schedule.every_s, now)
    if schedule.for_s is not None and at > schedule.for_s:
        return None
    return at


def breach(results: Sequence[RoundResult]) -> str | None:
    """Why the rounds so far are a breach of the warranty, or None when they are not."""
    judged = [r for r in results if r.verdict != "skipped"]
    if not judged:
        return None
    last = judged[-1]
    if last.verdict == "fail":
        return f"round {last.number} failed: {_reasons(last)}"
    streak = 0
    for result in reversed(judged):
        if result.verdict != "inconclusive":
            break
        streak += 1
    if streak >= INCONCLUSIVE_LIMIT:
        return f"{streak} inconclusive rounds in a row (last {last.number}: {_reasons(last)})"
    return None


def decide(results: Sequence[RoundResult], *, reversible: bool, alert_only: bool = False,
           over: bool = False) -> Decision:
    """After a round: roll back or alert on a breach; else go on, or end with the period."""
    reason = breach(results)
    if reason is not None:
        if alert_only:
            return Decision("alert", f"{reason} (alert only: not rolled back)")
        if not reversible:
            return Decision("alert", f"{reason} (past a point of no return: roll forward)")
        return Decision("rollback", reason)
    return Decision("done" if over else "continue")


@dataclass(frozen=True)
class LaterRelease:
    """A release of the same service and environment started after the monitored one."""

    name: str
    state: str
    touched: bool  # it changed at least one host


FINAL = ("released", "rolled_back", "rollback_failed", "failed", "aborted")


def standing(state: str, bad: bool, later: Sequence[LaterRelease],
             locked_by: str | None) -> tuple[Standing, str]:
    """Whether the monitored release is still the one in production, and if not, why.

    A later release that was rolled back restored this one, and one that stopped before
    touching a host changed nothing: neither counts. One in flight, or a lock held by
    anyone, pauses the monitor (a fleet mid-change is not judged); any other replaced it.
    """
    if bad or state != "released":
        return "ended", f"the release is now {state}{' (marked bad)' if bad else ''}"
    for other in later:
        if other.state == "rolled_back" or (other.state in FINAL and not other.touched):
            continue
        if other.state in FINAL:
            return "ended", f"superseded by {other.name} ({other.state})"
        return "paused", f"{other.name} is in flight ({other.state})"
    if locked_by is not None:
        return "paused", f"the environment is locked by {locked_by}"
    return "live", ""


def summarize(results: Sequence[RoundResult]) -> Summary:
    """Counts by verdict and the worst load figures seen (highest p95 and failure ratio,
    lowest rate)."""
    verdicts = {v: 0 for v in ("pass", "fail", "inconclusive", "skipped")}
    for result in results:
        verdicts[result.verdict] += 1
    loads = [r.load for r in results if r.load]
    figures: dict[str, float] = {}
    if loads:
        figures = {"probes": len(loads),
                   "worst_p95_ms": max(load.get("p95_ms", 0.0) for load in loads),
                   "lowest_rps": min(load.get("rps", 0.0) for load in loads),
                   "worst_failure_ratio": max(load.get("failure_ratio", 0.0) for load in loads)}
    return Summary(len(results), verdicts, figures)


def _reasons(result: RoundResult, limit: int = 3) -> str:
    shown = "; ".join(result.reasons[:limit]) or "no reason recorded"
    more = len(result.reasons) - limit
    return shown + (f" (+{more} more)" if more > 0 else "")
