"""Canary analysis on a real lab: ledger active/active (HAProxy round-robin) on three
primaries, the canary judged against the two still on 1.0.0 in the same seconds, before
batch 2 gets the release. A slow canary (2.0.0) fails its step and only the canary is
rolled back; too few samples is inconclusive (and rolls back too); a canary no different
from the old release passes and the release goes on; an inconclusive one waits for a
person's sign-off, given from another terminal, and goes on. The LB's weights are back as
they were after each. An active/standby ledger (HAProxy ``balance first``, a second lab)
judges a slow canary against the old release's window taken just before its change."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.adapters.haproxy import RuntimeApi
from controller.journal import Journal
from tests.http_target import LOCUSTFILE
from tests.integration.conftest import RunningLab, ledger_lab
from tests.integration.ledger_http import served_versions
from tests.relctl_cli import RELCTL, ROOT, example_text, relctl

pytestmark = pytest.mark.lab
PRIMARIES = ["primary-1", "primary-2", "primary-3"]


@pytest.fixture(scope="module")
def lab() -> Iterator[RunningLab]:
    with ledger_lab(primary=3, backup=0, base_address="127.0.94.10", round_robin=True) as up:
        yield up


@pytest.fixture(scope="module")
def standby_lab() -> Iterator[RunningLab]:
    """ledger active/standby (``balance first``): primary-1 answers everything."""
    with ledger_lab(primary=3, backup=0, base_address="127.0.94.40") as up:
        yield up


def weights(lab: RunningLab) -> dict[str, int]:
    api = RuntimeApi(f"{lab.hosts('lb')[0]['address']}:9999")
    return {s: api.weight("ledger", s) for s in PRIMARIES}


def manifest(folder: Path, name: str, version: str, **analysis: Any) -> Path:
    """ledger ``version`` as release ``name``: the canary (primary-1) then the other two,
    judged for 6 s at a third of the traffic on GET /health; no Locust gate after."""
    data: dict[str, Any] = yaml.safe_load(example_text(
        ROOT / "examples" / "releases" / f"ledger-{version}.yml"))
    data["release"] = name
    data["gates"]["locust"] = None
    data["strategy"] = {"canary": 1, "batch_size": 2, "analysis": {
        "locustfile": str(LOCUSTFILE), "users": 6, "spawn_rate": 6,
        "steps": [{"weight": 34, "duration_s": 6}], "min_samples": 30, **analysis}}
    path = folder / f"{name}.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def apply(lab: RunningLab, path: Path) -> tuple[int, dict[str, Any], str]:
    done = relctl(lab.state_dir, "apply", str(path), "--yes", "--json")
    return done.returncode, json.loads(done.stdout or "{}"), done.stderr


def analysis_of(lab: RunningLab, release: str) -> tuple[list[dict[str, Any]], dict[str, str]]:
    with Journal(lab.state_dir / "journal.sqlite") as journal:
        record = journal.find_release(release)
        assert record is not None
        steps = [{"verdict": g.verdict, **g.figures} for g in journal.gate_results(record.id)
                 if g.phase.startswith("canary:")]
        hosts = {h.host: h.state for h in journal.host_states(record.id)}
    return steps, hosts


def test_an_analysis_whose_backend_is_missing_is_refused_before_any_change(
        lab: RunningLab, tmp_path: Path) -> None:
    code, _outcome, err = apply(lab, manifest(tmp_path, "canary-nowhere-1.1.0", "1.1.0",
                                              lb={"backend": "nope"}))
    assert code == 2, err
    assert "has no backend 'nope'" in err
    with Journal(lab.state_dir / "journal.sqlite") as journal:
        assert journal.find_release("canary-nowhere-1.1.0") is None  # nothing started
    assert served_versions(lab) == {"1.0.0"}


def test_a_slow_canary_fails_its_step_and_only_the_canary_is_rolled_back(
        lab: RunningLab, tmp_path: Path) -> None:
    before = weights(lab)
    code, outcome, err = apply(lab, manifest(tmp_path, "canary-slow-2.0.0", "2.0.0"))
    assert code == 3, err
    assert "canary analysis fail" in outcome["message"]
    steps, hosts = analysis_of(lab, "canary-slow-2.0.0")
    assert [s["verdict"] for s in steps] == ["fail"]
    step = steps[0]
    assert step["canary_servers"] == ["primary-1"]
    assert step["old_servers"] == ["primary-2", "primary-3"]
    assert step["latency"]["effect"] > 0.9 and step["latency"]["p"] < 0.01
    assert step["candidate"]["p50_ms"] > step["baseline"]["p50_ms"]
    assert hosts["primary-1"] == "restored"
    assert all(hosts.get(h) != "applied" and hosts.get(h) != "restored"
               for h in ("primary-2", "primary-3"))  # batch 2 never got the release
    assert served_versions(lab) == {"1.0.0"}
    assert weights(lab) == before


def test_too_few_samples_is_inconclusive_after_a_second_window(lab: RunningLab,
                                                               tmp_path: Path) -> None:
    before = weights(lab)
    code, outcome, err = apply(lab, manifest(tmp_path, "canary-few-1.1.0", "1.1.0",
                                             min_samples=1_000_000))
    assert code == 3, err
    assert "canary analysis inconclusive" in outcome["message"]
    steps, hosts = analysis_of(lab, "canary-few-1.1.0")
    assert [(s["verdict"], s["attempts"]) for s in steps] == [("inconclusive", 2)]
    assert hosts["primary-1"] == "restored"
    assert served_versions(lab) == {"1.0.0"}
    assert weights(lab) == before


def test_an_inconclusive_canary_waits_for_a_sign_off_then_goes_on(lab: RunningLab,
                                                                 tmp_path: Path) -> None:
    before = weights(lab)
    path = manifest(tmp_path, "canary-asked-1.1.0", "1.1.0", min_samples=1_000_000,
                    on_inconclusive={"signoff": "canary-review", "wait": "3m"})
    err = tmp_path / "apply.err"
    with err.open("w") as stderr:
        applying = subprocess.Popen([*RELCTL, "--state-dir", str(lab.state_dir), "apply",
                                     str(path), "--yes"], stdout=subprocess.DEVNULL,
                                    stderr=stderr, text=True)
    try:
        deadline = time.monotonic() + 120
        while "waiting up to 3m for a sign-off" not in err.read_text():
            assert applying.poll() is None, err.read_text()
            assert time.monotonic() < deadline, err.read_text()
            time.sleep(0.5)
        assert served_versions(lab) == {"1.0.0", "1.1.0"}  # batch 2 waits with it
        signed = relctl(lab.state_dir, "signoff", "canary-asked-1.1.0", "--role",
                        "canary-review", "--by", "Rita Reviewer")
        assert signed.returncode == 0, signed.stderr
        applying.wait(timeout=300)
    finally:
        if applying.poll() is None:
            applying.kill()
            applying.wait()
    assert applying.returncode == 0, err.read_text()
    with Journal(lab.state_dir / "journal.sqlite") as journal:
        record = journal.find_release("canary-asked-1.1.0")
        assert record is not None and record.state == "released"
    steps, hosts = analysis_of(lab, "canary-asked-1.1.0")
    assert [(s["verdict"], s["attempts"]) for s in steps] == [("inconclusive", 2)]
    assert set(hosts.values()) == {"verified"}
    assert served_versions(lab) == {"1.1.0"}
    assert weights(lab) == before


def test_active_standby_a_slow_canary_fails_against_the_window_before_it(
        standby_lab: RunningLab, tmp_path: Path) -> None:
    before = weights(standby_lab)
    code, outcome, err = apply(standby_lab, manifest(
        tmp_path, "standby-slow-2.0.0", "2.0.0", compare="window-before",
        steps=[{"weight": 100, "duration_s": 6}]))
    assert code == 3, err
    assert "canary analysis fail" in outcome["message"]
    steps, hosts = analysis_of(standby_lab, "standby-slow-2.0.0")
    with Journal(standby_lab.state_dir / "journal.sqlite") as journal:
        record = journal.find_release("standby-slow-2.0.0")
        assert record is not None
        phases = [p.name for p in journal.phases(record.id)]
    assert phases.index("analysis:window-before") < phases.index("apply:canary")
    report = relctl(standby_lab.state_dir, "report", "standby-slow-2.0.0", "--format", "html")
    assert "the old release in the window taken just before the canary" in report.stdout
    assert [s["verdict"] for s in steps] == ["fail"], steps
    step = steps[0]
    assert step["compare"] == "window-before"
    assert step["candidate"]["requests"] >= 30 and step["baseline"]["requests"] >= 30
    assert step["candidate"]["p50_ms"] > step["baseline"]["p50_ms"]
    assert hosts["primary-1"] == "restored"
    assert all(hosts.get(h) not in ("applied", "restored") for h in ("primary-2", "primary-3"))
    assert served_versions(standby_lab) == {"1.0.0"}
    assert weights(standby_lab) == before


def test_a_canary_no_different_from_the_old_release_passes(lab: RunningLab,
                                                          tmp_path: Path) -> None:
    before = weights(lab)
    code, _outcome, err = apply(lab, manifest(tmp_path, "canary-good-1.1.0", "1.1.0"))
    assert code == 0, err
    steps, hosts = analysis_of(lab, "canary-good-1.1.0")
    assert [s["verdict"] for s in steps] == ["pass"], steps
    assert steps[0]["candidate"]["requests"] >= 30 and steps[0]["baseline"]["requests"] >= 30
    assert set(hosts.values()) == {"verified"}
    assert served_versions(lab) == {"1.1.0"}
    assert weights(lab) == before
