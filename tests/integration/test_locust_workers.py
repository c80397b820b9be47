"""The load gate in Locust's distributed mode (``workers: N``): a master and N worker
processes on the controller give the same figures and verdicts as one process.

Needs no lab: Locust loads a tiny HTTP service the test starts on 127.0.70.2.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.adapters.locust import LoadRun, run_load
from controller.models.manifest import LoadThresholds, LocustGate
from controller.planning.gates import judge_load
from tests.http_target import LOCUSTFILE, HealthServer


@pytest.mark.parametrize("workers", [0, 2])
def test_a_load_gate_gives_figures_and_a_verdict(workers: int, tmp_path: Path) -> None:
    gate = LocustGate(locustfile=LOCUSTFILE, users=8, spawn_rate=8, duration_s=4,
                      workers=workers,
                      thresholds=LoadThresholds(p95_ms=2000, max_failure_ratio=0.01, min_rps=5))
    with HealthServer("127.0.70.2") as server:
        stats = run_load(LoadRun(gate.locustfile, server.url, gate.users, gate.spawn_rate,
                                 gate.duration_s, tmp_path, f"candidate-{workers}",
                                 workers=gate.workers))
    verdict = judge_load(gate.thresholds, stats, None)
    assert stats.requests >= 20 and stats.failures == 0, stats
    assert stats.rps > 5 and 0 < stats.p50_ms <= stats.p95_ms <= stats.p99_ms
    assert verdict.outcome == "pass", verdict.reasons
    log = (tmp_path / f"candidate-{workers}.log").read_text()
    if workers:  # a master, and its workers reporting to it
        assert f"{workers} workers connected" in log, log[-800:]
        assert "The last worker quit, stopping test" in log, log[-800:]


def test_workers_are_a_bounded_whole_number() -> None:
    with pytest.raises(ValueError, match="workers"):
        LocustGate(locustfile=LOCUSTFILE, workers=-1)
    with pytest.raises(ValueError, match="workers"):
        LocustGate(locustfile=LOCUSTFILE, workers=65)
