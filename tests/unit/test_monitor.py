"""Warranty monitoring as data: the schedule, breach decisions, standing, the journal."""

from __future__ import annotations

import io
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.journal import Holder, Journal, LockedError, current_holder
from controller.journal.db import MIGRATIONS
from controller.models.notify import NotifyConfig
from controller.notify import notify_event
from controller.planning.monitor import (
    LaterRelease,
    RoundResult,
    RoundVerdict,
    Schedule,
    breach,
    decide,
    next_round_at,
    standing,
    summarize,
)

DEAD = Holder("ada", current_holder().host, 2**22 + 7, 1.0)  # no such process here


def rounds(*verdicts: RoundVerdict) -> list[RoundResult]:
    return [RoundResult(n, v, (f"reason {n}",)) for n, v in enumerate(verdicts, start=1)]


# --- the schedule -----------------------------------------------------------------------


def test_rounds_keep_their_interval_from_the_previous_start() -> None:
    schedule = Schedule(every_s=300, for_s=3600)
    assert next_round_at(schedule, 0, None, 0.0) == 0.0
    assert next_round_at(schedule, 1, 0.0, 40.0) == 300.0


def test_a_slow_round_is_followed_at_once_without_a_burst() -> None:
    schedule = Schedule(every_s=5, for_s=120)
    assert next_round_at(schedule, 3, 10.0, 31.5) == 31.5


def test_no_round_starts_after_the_period() -> None:
    schedule = Schedule(every_s=300, for_s=900)
    assert next_round_at(schedule, 3, 600.0, 630.0) == 900.0  # the last one, at the end
    assert next_round_at(schedule, 4, 900.0, 930.0) is None
    assert schedule.planned_rounds() == 4


def test_a_schedule_reads_as_people_write_it() -> None:
    assert Schedule(every_s=300, for_s=259200).describe() == "every 5m, for 72h, probe 5s"
    assert Schedule(every_s=30, rounds=3, probe_s=0).describe() == (
        "every 30s, at most 3 rounds, no probe")


def test_rounds_end_the_monitor_before_the_period() -> None:
    schedule = Schedule(every_s=30, for_s=3600, rounds=3)
    assert next_round_at(schedule, 2, 30.0, 45.0) == 60.0
    assert next_round_at(schedule, 3, 60.0, 70.0) is None
    assert schedule.planned_rounds() == 3
    assert Schedule(every_s=30, rounds=5).planned_rounds() == 5


def test_a_schedule_needs_an_end_and_a_positive_interval() -> None:
    with pytest.raises(ValueError, match="a period"):
        Schedule(every_s=60.0)
    with pytest.raises(ValueError, match="positive"):
        Schedule(every_s=0.0, rounds=3)


# --- breach and decision ------------------------------------------------------------------


def test_passing_rounds_continue_then_end_with_the_period() -> None:
    assert decide(rounds("pass", "pass"), reversible=True).action == "continue"
    assert decide(rounds("pass", "pass"), reversible=True, over=True).action == "done"


def test_a_failed_round_rolls_a_reversible_release_back_at_once() -> None:
    decision = decide(rounds("pass", "fail"), reversible=True)
    assert decision.action == "rollback"
    assert decision.reason == "round 2 failed: reason 2"


def test_a_breach_wins_over_the_end_of_the_period() -> None:
    assert decide(rounds("pass", "fail"), reversible=True, over=True).action == "rollback"


def test_a_failed_round_of_an_irreversible_release_alerts() -> None:
    decision = decide(rounds("fail"), reversible=False)
    assert decision.action == "alert"
    assert "roll forward" in decision.reason


def test_alert_only_never_rolls_back() -> None:
    decision = decide(rounds("fail"), reversible=True, alert_only=True)
    assert decision.action == "alert"
    assert "not rolled back" in decision.reason


def test_one_inconclusive_round_is_no_breach_two_in_a_row_are() -> None:
    assert decide(rounds("pass", "inconclusive"), reversible=True).action == "continue"
    assert decide(rounds("inconclusive", "pass", "inconclusive"),
                  reversible=True).action == "continue"
    decision = decide(rounds("pass", "inconclusive", "inconclusive"), reversible=True)
    assert decision.action == "rollback"
    assert decision.reason.startswith("2 inconclusive rounds in a row (last 3")


def test_skipped_rounds_are_not_judged_and_do_not_break_a_streak() -> None:
    assert breach(rounds("skipped", "skipped")) is None
    assert breach(rounds("pass", "skipped", "pass")) is None
    assert breach(rounds("inconclusive", "skipped", "inconclusive")) is not None
    assert decide(rounds("fail", "skipped"), reversible=True).action == "rollback"


def test_many_reasons_are_cut_short() -> None:
    failed = RoundResult(1, "fail", tuple(f"check {n}" for n in range(6)))
    assert breach([failed]) == "round 1 failed: check 0; check 1; check 2 (+3 more)"


# --- is the release still the one in production? -----------------------------------------


def test_a_released_release_alone_is_live() -> None:
    assert standing("released", False, [], None) == ("live", "")


@pytest.mark.parametrize(("state", "bad"), [("rolled_back", True), ("released", True)])
def test_a_release_rolled_back_meanwhile_ends_the_monitor(state: str, bad: bool) -> None:
    where, why = standing(state, bad, [], None)
    assert where == "ended" and state in why


def test_a_later_release_supersedes_it() -> None:
    later = [LaterRelease("ledger-1.2.0", "released", touched=True)]
    assert standing("released", False, later, None) == (
        "ended", "superseded by ledger-1.2.0 (released)")


def test_later_releases_that_changed_nothing_or_were_rolled_back_do_not_count() -> None:
    later = [LaterRelease("ledger-2.0.0", "rolled_back", touched=True),
             LaterRelease("ledger-2.0.1", "aborted", touched=False)]
    assert standing("released", False, later, None)[0] == "live"


def test_a_release_in_flight_or_a_lock_pauses_the_monitor() -> None:
    in_flight = [LaterRelease("ledger-1.2.0", "applying", touched=True)]
    assert standing("released", False, in_flight, "ledger-1.2.0")[0] == "paused"
    assert standing("released", False, [], "ledger-1.2.0") == (
        "paused", "the environment is locked by ledger-1.2.0")


def test_summary_counts_verdicts_and_keeps_the_worst_figures() -> None:
    results = [RoundResult(1, "pass", load={"p95_ms": 12.0, "rps": 80.0, "failure_ratio": 0.0}),
               RoundResult(2, "skipped"),
               RoundResult(3, "pass", load={"p95_ms": 30.0, "rps": 60.0,
                                            "failure_ratio": 0.002})]
    summary = summarize(results)
    assert summary.rounds == 3
    assert summary.verdicts == {"pass": 2, "fail": 0, "inconclusive": 0, "skipped": 1}
    assert summary.figures == {"probes": 2, "worst_p95_ms": 30.0, "lowest_rps": 60.0,
                               "worst_failure_ratio": 0.002}


def test_the_breach_notice_tells_users_the_service_is_degraded() -> None:
    out = io.StringIO()
    config = NotifyConfig.model_validate({"channels": [{"kind": "stdout"}]})
    deliveries = notify_event(config, "breach", {
        "service": "ledger", "environment": "lab", "version": "2.0.0",
        "release": "ledger-2.0.0", "reason": "round 4 failed: p95 900 ms > 300 ms",
        "contact": "Ada Ops"}, stdout=out)
    assert [d.ok for d in deliveries] == [True]
    text = out.getvalue()
    assert "Service degraded: ledger in lab after the update to 2.0.0" in text
    assert "Why:          round 4 failed: p95 900 ms > 300 ms" in text
    assert "$" not in text


# --- the journal's monitor tables ---------------------------------------------------------


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal(tmp_path / "journal.db") as opened:
        yield opened


def released(journal: Journal) -> int:
    release_id = journal.start_release(
        name="ledger-1.1.0", version="1.1.0", service="ledger", environment="lab",
        manifest_path=Path("/m/ledger-1.1.0.yml"), manifest_sha256="ab" * 32)
    journal.set_release_state(release_id, "released", exit_code=0)
    return release_id


def test_rounds_are_written_when_they_start_and_when_they_end(journal: Journal) -> None:
    release_id = released(journal)
    monitor_id = journal.claim_monitor(release_id, {"every_s": 5.0})
    round_id = journal.begin_round(monitor_id, 1)
    running = journal.monitor_rounds(release_id)
    assert [(r.round, r.verdict, r.ended) for r in running] == [(1, None, None)]
    ended = journal.end_round(round_id, "pass", {"load": {"p95_ms": 12.0}, "token": "s3cr3t"})
    assert ended.verdict == "pass" and ended.ended is not None
    assert ended.detail == {"load": {"p95_ms": 12.0}, "token": "***"}
    record = journal.end_monitor(monitor_id, "passed", exit_code=0, message="no breach",
                                 summary={"rounds": 1})
    assert (record.state, record.exit_code, record.summary) == ("passed", 0, {"rounds": 1})
    assert record.settings == {"every_s": 5.0}
    assert [m.id for m in journal.monitors(release_id)] == [monitor_id]


def test_a_second_live_monitor_of_a_release_is_refused(journal: Journal) -> None:
    release_id = released(journal)
    journal.claim_monitor(release_id, {})
    with pytest.raises(LockedError, match="already runs"):
        journal.claim_monitor(release_id, {})


def test_a_monitor_whose_process_died_is_marked_stopped(journal: Journal) -> None:
    release_id = released(journal)
    dead = journal.claim_monitor(release_id, {}, holder=DEAD)
    journal.claim_monitor(release_id, {})
    assert journal.monitor(dead).state == "stopped"
    assert [m.state for m in journal.monitors(release_id)] == ["running", "stopped"]


def test_a_journal_of_the_previous_schema_gains_the_monitor_tables(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    raw = sqlite3.connect(path)
    for statements in MIGRATIONS[:2]:
        for statement in statements:
            raw.execute(statement)
    raw.execute("PRAGMA user_version = 2")
    raw.commit()
    raw.close()
    with Journal(path) as journal:
        assert journal.monitors() == []
        assert journal.monitor_rounds() == []
