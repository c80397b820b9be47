"""``relctl plan``: the implementation plan, from the example manifests and a temp journal."""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path

import pytest

from controller.cli.plan import read_history
from controller.engine.continuity.follow import FOLLOW_PHASE
from controller.journal import Holder, Journal
from controller.manifest_loader import load_manifest
from controller.models.manifest import AnalysisStep, CanaryAnalysis, Gates, Manifest, Risk
from controller.planning.runbook import (
    BackupSite,
    Fleet,
    History,
    ImplementationPlan,
    PastPhase,
    build_plan,
    estimate,
)
from controller.reports.plan_render import render
from tests.relctl_cli import relctl
from tests.unit.example_tree import example_tree

ROOT = Path(__file__).resolve().parents[2]
RELEASES = ("1.1.0", "1.2.0", "2.0.0", "2.0.1")
HOSTS = ["primary-1", "primary-2", "primary-3"]
NOW = datetime(2026, 11, 30, 9, 0, 30, tzinfo=UTC)
CET = timezone(timedelta(hours=1))
ADA = Holder("ada", "ctl-1", 4242, 1000.0)
INVENTORY = """\
all:
  children:
    app_primary:
      hosts:
        primary-1: {ansible_host: 127.0.0.11}
        primary-2: {ansible_host: 127.0.0.12}
    app_backup:
      hosts: {}
"""


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """The example manifests, copied with (dummy) files at every path they reference."""
    return example_tree(tmp_path)


def manifest_path(tree: Path, version: str, window: str = "") -> Path:
    """An example manifest; a copy next to it with ``window`` (YAML) appended when given."""
    path = tree / "examples" / "releases" / f"ledger-{version}.yml"
    if not window:
        return path
    copy = path.with_name(f"ledger-{version}-{hashlib.sha256(window.encode()).hexdigest()[:8]}.yml")
    copy.write_text(path.read_text() + window)
    return copy


def example(tree: Path, version: str, window: str = "") -> Manifest:
    return load_manifest(manifest_path(tree, version, window))


WINDOW = "window:\n  start: 2026-12-01T22:00:00+01:00\n  end: 2026-12-02T02:00:00+01:00\n"


def plan_of(manifest: Manifest, hosts: list[str] = HOSTS, history: History | None = None,
            backups: tuple[str, ...] = ("backup-1",),
            start: datetime | None = None) -> ImplementationPlan:
    return build_plan(manifest, Fleet(hosts, list(backups)), history or History(), now=NOW,
                      start=start, snapshot_store="/state/snapshots")


def detected(plan: ImplementationPlan) -> str:
    return "\n".join(r.title for r in plan.risks if r.source == "detected")


# --- the runbook ------------------------------------------------------------------------


def test_runbook_starts_at_the_window_and_its_clock_times_add_up(tree: Path) -> None:
    plan = plan_of(example(tree, "1.2.0", WINDOW))
    steps = plan.steps
    assert plan.start == datetime(2026, 12, 1, 22, 0, tzinfo=CET)
    assert plan.start_basis == "change window start"
    assert [s.key for s in steps] == [
        "notice", "lock", "baseline", "snapshot", "apply:canary", "apply:batch2",
        "gate:locust", "signoff", "close", "warranty"]
    assert all(after.start == before.end for before, after in itertools.pairwise(steps))
    assert plan.end == plan.start + timedelta(minutes=plan.total_minutes)
    assert plan.total_minutes == sum(s.minutes for s in steps) > 0
    assert [b.hosts for b in plan.batches] == [["primary-1"], ["primary-2", "primary-3"]]
    assert {s.owner for s in steps if s.key != "signoff"} == {"Ada Ops"}
    assert steps[7].owner == "Change Board"
    assert {s.basis for s in steps} == {"default"}


def test_start_option_beats_the_window_and_now_rounds_up(tree: Path) -> None:
    manifest = example(tree, "1.1.0", WINDOW)
    given = datetime(2026, 12, 2, 1, 30, tzinfo=CET)
    late = plan_of(manifest, start=given)
    assert (late.start, late.start_basis) == (given, "given start")
    assert "outside the change window" in detected(late)
    bare = plan_of(example(tree, "2.0.0"))
    assert (bare.start, bare.start_basis) == (datetime(2026, 11, 30, 9, 1, tzinfo=UTC), "now")


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal(tmp_path / "journal.sqlite", clock=lambda: clock.now) as opened:
        yield opened


class clock:  # noqa: N801 - a module-level clock the journal reads
    now = datetime(2026, 11, 1, 22, 0, tzinfo=UTC)


def past_release(journal: Journal, version: str, phases: dict[str, float], *,
                 service: str = "ledger", p95_ms: float | None = None) -> int:
    """A released ``version`` whose phases took ``phases`` seconds, on every host."""
    release_id = journal.start_release(
        name=f"{service}-{version}", version=version, service=service, environment="lab",
        manifest_path=Path("/m.yml"), manifest_sha256="0" * 64, operator=ADA)
    for name, seconds in phases.items():
        phase_id = journal.begin_phase(release_id, name)
        clock.now += timedelta(seconds=seconds)
        journal.end_phase(phase_id, "ok")
    if p95_ms is not None:
        journal.add_gate_result(release_id, phase="candidate", kind="locust", verdict="pass",
                                figures={"candidate": {"p95_ms": p95_ms}})
    for host in HOSTS:
        journal.set_host_state(release_id, host, "verified", version_after=version)
    journal.set_release_state(release_id, "released", exit_code=0)
    return release_id


def test_estimates_are_medians_of_the_same_service_history(tree: Path, journal: Journal) -> None:
    past_release(journal, "1.0.0", {"snapshot": 60, "apply:canary": 300,
                                    "gate:testinfra:canary": 30, "apply:batch2": 400})
    past_release(journal, "1.1.0", {"snapshot": 120, "apply:canary": 500,
                                    "gate:testinfra:canary": 90, "rollback": 200},
                 p95_ms=40)
    past_release(journal, "9.9.9", {"snapshot": 99999}, service="other")
    manifest = example(tree, "1.2.0", WINDOW)
    plan = plan_of(manifest, history=read_history(journal, manifest, HOSTS))
    step = {s.key: s for s in plan.steps}
    assert (step["snapshot"].minutes, step["snapshot"].basis) == (2, "history (n=2)")
    assert step["apply:canary"].minutes == 8  # 400 s + 60 s
    assert step["apply:batch2"].basis == "history (n=1) + default"
    assert step["notice"].basis == "default"
    assert plan.rollback_estimate.basis == "history (n=1) + default"
    assert plan.end == plan.start + timedelta(minutes=plan.total_minutes)
    changes = {c.change for c in plan.items if c.kind == "artifact"}
    assert changes == {"version 1.1.0 → 1.2.0"}
    assert "threshold 300 ms is 7.5x" in detected(plan)


def test_batch_phases_fall_back_to_their_family() -> None:
    history = History([PastPhase("apply:batch2", 100), PastPhase("apply:batch3", 300),
                       PastPhase("apply:canary", 50)])
    assert history.durations("apply:batch4") == [100, 300]
    assert history.durations("apply:canary") == [50]
    assert estimate(history.durations("apply:batch4"), 600).seconds == 200
    assert estimate([], 600).basis == "default"


# --- rollback and risks -----------------------------------------------------------------


@pytest.mark.parametrize("version", RELEASES)
def test_rollback_plan_lists_every_item(tree: Path, version: str) -> None:
    manifest = example(tree, version)
    plan = plan_of(manifest)
    assert [r.item for r in plan.rollback] == [item.name for item in manifest.items]
    assert all(r.snapshot.startswith("/state/snapshots/<release-id>/") for r in plan.rollback)


def test_the_irreversible_data_item_is_flagged(tree: Path) -> None:
    plan = plan_of(example(tree, "1.2.0", WINDOW))
    assert plan.points_of_no_return == ["ledger-db"]
    db = next(r for r in plan.rollback if r.item == "ledger-db")
    assert "refuses the rollback" in db.restore
    assert "POINT OF NO RETURN" in next(s.title for s in plan.steps if s.key == "apply:canary")
    assert "ledger-db (/var/lib/ledger/ledger.db) is converted in place" in detected(plan)
    assert plan_of(example(tree, "1.1.0")).points_of_no_return == []


def test_declared_and_detected_risks(tree: Path) -> None:
    manifest = example(tree, "2.0.1")
    bare = manifest.model_copy(update={"gates": Gates(testinfra=manifest.gates.testinfra)})
    plan = plan_of(bare, ["primary-1"], backups=())
    assert (plan.risks[0].title, plan.risks[0].source) == (manifest.risks[0].title, "declared")
    found = detected(plan)
    for words in ("No backup hosts", "single target host", "No Locust gate",
                  "No change window"):
        assert words in found
    short = "window:\n  start: 2026-12-01T22:00:00Z\n  end: 2026-12-01T22:30:00Z\n"
    assert "is shorter than the runbook" in detected(plan_of(example(tree, "1.1.0", short)))
    roomy = plan_of(example(tree, "1.1.0", WINDOW),
                    history=History(backup=BackupSite(plan="/plans/ledger-dr.yml")))
    assert detected(roomy) == ""


def followed(journal: Journal, release_id: int, state: str, hosts: list[str]) -> None:
    """The backup site's follow of release ``release_id``, as follow_release journals it."""
    phase = journal.begin_phase(release_id, FOLLOW_PHASE, {"plan": "/p.yml", "hosts": hosts})
    if state != "running":
        journal.end_phase(phase, "ok" if state == "ok" else "failed")


def test_each_site_before_and_after_and_whether_the_backups_follow(
        tree: Path, journal: Journal) -> None:
    first = past_release(journal, "1.0.0", {"snapshot": 60, "apply:canary": 40})
    followed(journal, first, "ok", ["backup-1", "backup-2"])
    second = past_release(journal, "1.1.0", {"snapshot": 60})
    followed(journal, second, "failed", ["backup-2"])  # backup-2 half-deployed: unknown
    manifest = example(tree, "1.2.0", WINDOW)
    history = read_history(journal, manifest, HOSTS)
    assert history.backup.versions == {"backup-1": "1.0.0"}
    assert history.backup.plan is None  # no continuity plan lists the manifest
    plan = plan_of(manifest, history=history, backups=("backup-1", "backup-2"))
    rows = {(s.site, s.host): (s.now, s.after) for s in plan.sites}
    assert rows[("primary", "primary-1")] == ("1.1.0", "1.2.0")
    assert rows[("backup", "backup-1")] == ("1.0.0", "1.0.0")
    assert rows[("backup", "backup-2")] == (None, None)
    assert ("does not follow this release (backup-1 1.0.0, backup-2 unknown): after it, a "
            "failover first deploys 1.2.0 there, adding about 40 s (the median apply phase "
            "of past releases) to the RTO") in detected(plan)
    text = render(plan, "markdown")
    assert "| backup | backup-1 | 1.0.0 | 1.0.0 |" in text
    assert "The backup site does not follow this release" in text
    covered = History(history.phases, history.candidate_p95_ms, history.versions,
                      BackupSite(history.backup.versions, "/plans/ledger-dr.yml"))
    plan = plan_of(manifest, history=covered, backups=("backup-1", "backup-2"))
    assert {(s.host, s.after) for s in plan.sites if s.site == "backup"} == {
        ("backup-1", "1.2.0"), ("backup-2", "1.2.0")}
    assert "does not follow" not in detected(plan)
    assert "`/plans/ledger-dr.yml` lists it" in render(plan, "markdown")
    third = past_release(journal, "1.2.0", {"snapshot": 60})
    followed(journal, third, "running", ["backup-1"])  # a controller killed mid-follow
    assert read_history(journal, manifest, HOSTS).backup.versions == {}


# --- rendering --------------------------------------------------------------------------


class TagChecker(HTMLParser):
    """Fails on a closing tag that does not close the innermost open one."""

    VOID = frozenset({"meta", "br", "hr", "img", "input", "link"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack.pop() == tag, f"unbalanced </{tag}>"

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def hostile_plan(tree: Path) -> ImplementationPlan:
    """ledger-1.2.0 with a risk whose text would break HTML and Markdown tables."""
    manifest = example(tree, "1.2.0", WINDOW)
    risk = Risk(title="<script>alert(1)</script> | & co", likelihood="low", impact="low",
                mitigation="a|b")
    return plan_of(manifest.model_copy(update={"risks": [*manifest.risks, risk]}))


def test_markdown_has_the_tables_and_a_checkbox_per_step(tree: Path) -> None:
    plan = hostile_plan(tree)
    text = render(plan, "markdown")
    for header in ("| Host | Item | Kind | Change | Path |",
                   "| # | Batch | Hosts |",
                   "| Item | Kind | Restored by | From snapshot | Point of no return |",
                   "| Risk | Likelihood | Impact | Mitigation | Source |"):
        assert header in text
    assert text.count("- [ ] **") == len(plan.steps) + 1 + len(plan.approvers)
    assert "- [ ] **1. 22:00-22:15** Notice" in text
    assert r"\<script\>alert(1)\</script\> \| & co | low | low | a\|b | declared |" in text


def test_html_is_balanced_and_escaped(tree: Path) -> None:
    text = render(hostile_plan(tree), "html")
    checker = TagChecker()
    checker.feed(text)
    checker.close()
    assert checker.stack == []
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<script>alert(1)</script> | & co" in "".join(checker.text)


def test_json_parses_with_the_whole_plan(tree: Path) -> None:
    plan = hostile_plan(tree)
    data = json.loads(render(plan, "json"))
    assert data["start"] == "2026-12-01T22:00:00+01:00"
    assert data["total_minutes"] == sum(s["minutes"] for s in data["steps"])
    assert data["points_of_no_return"] == ["ledger-db"]
    assert [b["label"] for b in data["batches"]] == ["canary", "batch2"]
    assert {r["source"] for r in data["risks"]} == {"declared", "detected"}


# --- the command ------------------------------------------------------------------------


def test_cli_plans_from_a_static_inventory(tree: Path, tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(INVENTORY)
    env = {"RELCTL_JOURNAL": str(tmp_path / "journal.sqlite")}
    manifest = str(manifest_path(tree, "1.2.0", WINDOW))
    result = relctl(tmp_path / "state", "plan", manifest, "--inventory", str(inventory),
                    "--json", env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["hosts"] == ["primary-1", "primary-2"]
    assert data["backup_hosts"] == []
    assert "No backup hosts" in "".join(r["title"] for r in data["risks"])
    page = tmp_path / "plan.html"
    result = relctl(tmp_path / "state", "plan", manifest, "--inventory", str(inventory),
                    "--format", "html", "--output", str(page), env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert page.read_text().startswith("<!DOCTYPE html>")
    broken = tree / "examples" / "releases" / "broken.yml"
    broken.write_text("release: x\n")
    result = relctl(tmp_path / "state", "plan", str(broken), env=env, timeout=120)
    assert result.returncode == 2
    assert "required field missing" in result.stderr


@pytest.mark.parametrize("environment", ["staging", "production"])
def test_the_example_inventories_hold_the_groups_the_examples_name(
        tree: Path, tmp_path: Path, environment: str) -> None:
    inventory = ROOT / "inventories" / environment / "hosts.yml"
    env = {"RELCTL_JOURNAL": str(tmp_path / "journal.sqlite")}
    result = relctl(tmp_path / "state", "plan", str(tree / "examples/releases/ledger-1.1.0.yml"),
                    "--inventory", str(inventory), "--json", env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert len(data["hosts"]) == 3 and len(data["backup_hosts"]) == 2
    assert all(h.endswith(".example.test") for h in data["hosts"] + data["backup_hosts"])


def test_the_runbook_shows_the_canary_analysis_steps(tree: Path) -> None:
    manifest = example(tree, "1.2.0", WINDOW)
    analysis = CanaryAnalysis(steps=[AnalysisStep(weight=10, duration_s=30),
                                     AnalysisStep(weight=50, duration_s=30)])
    judged = manifest.model_copy(update={"strategy": manifest.strategy.model_copy(
        update={"analysis": analysis})})
    keys = [s.key for s in plan_of(judged).steps]
    assert keys.index("analysis:canary") == keys.index("apply:canary") + 1
    step = next(s for s in plan_of(judged).steps if s.key == "analysis:canary")
    assert "10 % for 30 s, then 50 % for 30 s" in step.title
    assert step.minutes == 2  # 60 s of load and a minute of start-up, by default
    assert "analysis:canary" not in [s.key for s in plan_of(manifest).steps]


def test_the_runbook_says_what_an_active_standby_canary_is_judged_against(tree: Path) -> None:
    manifest = example(tree, "1.2.0", WINDOW)
    analysis = CanaryAnalysis.model_validate({
        "compare": "window-before", "steps": [{"weight": 100, "duration_s": 30}],
        "on_inconclusive": {"signoff": "canary-review", "wait": "30m"}})
    judged = manifest.model_copy(update={"strategy": manifest.strategy.model_copy(
        update={"analysis": analysis})})
    step = next(s for s in plan_of(judged).steps if s.key == "analysis:canary")
    assert "the old release's 30 s window taken just before the canary's change" in step.title
    assert "waits up to 30m for a canary-review sign-off" in step.title
    assert step.minutes == 3  # the window, the step, and each one's start-up
