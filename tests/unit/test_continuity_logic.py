"""Pure continuity logic: durations, targets, catch-up lists, the plan's validation."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from controller.adapters.ansible import (
    HostOutcome,
    PlaybookResult,
    failure_summary,
    listed_hosts,
)
from controller.engine.continuity import load_plan
from controller.engine.continuity.failback import _Failback
from controller.engine.continuity.follow import covering_plan
from controller.engine.continuity.records import StepRunner
from controller.errors import ContinuityError
from controller.journal import Journal
from controller.manifest_loader import ConfigError, load_manifest
from controller.models.durations import format_duration, parse_duration
from controller.models.rows import TableRows
from controller.planning.continuity import catch_up, covers, judge_targets
from controller.planning.versions import VersionRead, read_version
from controller.reports.continuity_md import dr_plan_markdown

ROOT = Path(__file__).resolve().parents[2]
PLAN = ROOT / "examples" / "continuity" / "ledger-lab.yml"
COLUMNS = ["id", "account", "amount_cents"]


@pytest.mark.parametrize(("text", "seconds"), [
    (30, 30.0), ("30", 30.0), ("250ms", 0.25), ("1.5s", 1.5), ("5m", 300.0), ("72h", 259200.0),
    ("1d", 86400.0),
])
def test_durations_parse(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "-5s", "5 minutes", True])
def test_bad_durations_are_refused(text: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_durations_format() -> None:
    assert [format_duration(s) for s in (0.85, 4.25, 30, 300, 9000)] == [
        "850ms", "4.2s", "30s", "5m", "2h30m"]


def test_catch_up_lists_rows_after_the_replica_both_ways() -> None:
    replica = {"tx": TableRows(COLUMNS, [(1, "alice", 10), (2, "bob", 20)])}
    old = {"tx": TableRows(COLUMNS, [(1, "alice", 10), (2, "bob", 20), (3, "carol", 30),
                                     (4, "dave", 40)])}
    # The backup restarted from the replica and reused id 3 for another transaction.
    backup = {"tx": TableRows(COLUMNS, [(1, "alice", 10), (2, "bob", 20), (3, "erin", 77)])}
    result = catch_up(old, backup, replica)
    assert result.missing_on_backup == {"tx": [
        {"id": 3, "account": "carol", "amount_cents": 30},
        {"id": 4, "account": "dave", "amount_cents": 40}]}
    assert result.only_on_backup == {"tx": [{"id": 3, "account": "erin", "amount_cents": 77}]}
    assert result.after_replication == {"tx": 2}
    assert result.total_missing == 2


def test_catch_up_of_identical_sites_is_empty() -> None:
    same = {"tx": TableRows(COLUMNS, [(1, "alice", 10)])}
    result = catch_up(same, same, None)
    assert result.missing_on_backup == {} and result.only_on_backup == {}


def test_targets_are_judged_per_function() -> None:
    plan, _ = load_plan(PLAN)
    results = judge_targets(plan, {"record-transactions": 4.0, "service-health": None}, 90.0)
    by_name = {r.function: r for r in results}
    assert [r.function for r in results] == ["record-transactions", "service-health"]
    assert by_name["record-transactions"].rto_met and by_name["record-transactions"].rpo_met
    assert not by_name["service-health"].rto_met  # never verified
    assert not judge_targets(plan, {"record-transactions": 4.0}, 600.0)[0].rpo_met


def test_plan_errors_name_file_line_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "plan.yml"
    text = PLAN.read_text().replace("../../loadtests", str(ROOT / "loadtests"))
    bad.write_text(text.replace("priority: 2", "priority: 2\n    colour: red"))
    with pytest.raises(ConfigError) as error:
        load_plan(bad)
    line = text.splitlines().index("    priority: 2") + 2
    assert f"{bad}:{line}: functions[1].colour: unknown field" in error.value.message


@pytest.mark.parametrize(("example", "method", "says"), [
    ("ledger-lab.yml", "copy", "every 1m"),
    ("ledger-litestream.yml", "litestream", "streamed by Litestream to its file replica"),
    ("ledger-postgresql.yml", "postgresql", "streamed to a standby on each backup host"),
])
def test_each_example_plan_names_its_replication(example: str, method: str, says: str) -> None:
    plan, _ = load_plan(ROOT / "examples" / "continuity" / example)
    assert plan.replication == method
    assert says in plan.data[0].summary


@pytest.mark.parametrize(("example", "old", "new", "field", "message"), [
    ("ledger-postgresql.yml", "      data_dir: /var/lib/postgresql/lab\n", "",
     "data[0].standby.data_dir", "required field missing"),
    ("ledger-postgresql.yml", "    standby:  ", "    path: /x\n    standby:  ", "data[0]",
     "engine postgresql takes postgresql and standby, not path"),
    ("ledger-postgresql.yml", "    engine: postgresql\n", "", "data[0]",
     "engine sqlite needs path"),
    ("ledger-litestream.yml", "{type: file, path: /mnt/litestream/ledger-db}", "{path: /x}",
     "data[0].litestream.replica", "needs `type`"),
    ("ledger-litestream.yml", "sync_interval: 1s", "sync_interval: 0s",
     "data[0].litestream.sync_interval", "greater than 0"),
    ("ledger-litestream.yml", "    every: 1m", "    every: 1m\n  - name: other-db\n"
     "    path: /var/lib/x.db\n    every: 1m", "data", "one replication method per plan"),
    ("ledger-lab.yml", "version_path: /version\n",
     "version_path: /version\nversion_pattern: 'v(\\d+'\n", "version_pattern",
     "not a regular expression"),
    ("ledger-lab.yml", "version_path: /version\n",
     "version_path: /version\nversion_pointer: datasette/version\n", "version_pointer",
     "should match pattern"),
])
def test_bad_replication_settings_name_the_field(tmp_path: Path, example: str, old: str,
                                                  new: str, field: str, message: str) -> None:
    text = (ROOT / "examples" / "continuity" / example).read_text().replace(
        "../../loadtests", str(ROOT / "loadtests"))
    assert old in text
    bad = tmp_path / "plan.yml"
    bad.write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigError) as error:
        load_plan(bad)
    assert f"{bad}:" in error.value.message and f": {field}: " in error.value.message
    assert message in error.value.message


@pytest.mark.parametrize(("body", "pointer", "pattern", "version"), [
    (b'{"version": "1.1.0"}', "/version", None, "1.1.0"),
    (b'{"datasette": {"version": "0.64.6"}, "python": {"version": "3.11.2"}}',
     "/datasette/version", None, "0.64.6"),
    (b'{"build": [{"v": 7}]}', "/build/0/v", None, "7"),
    (b'{"a/b": {"c~d": "2.0"}}', "/a~1b/c~0d", None, "2.0"),
    (b"notes 1.4.2 (build 77)\n", "/version", r"notes (\S+)", "1.4.2"),
    (b'<meta name="version" content="3.2.1">', "/version", r"\d+\.\d+\.\d+", "3.2.1"),
])
def test_versions_are_read_the_way_the_service_reports_them(
        body: bytes, pointer: str, pattern: str | None, version: str) -> None:
    assert read_version(body, pointer, pattern) == VersionRead(version)


@pytest.mark.parametrize(("body", "pointer", "pattern", "says"), [
    (b'{"datasette": {"version": "0.64.6"}}', "/version", None, "finds nothing"),
    (b'{"version": null}', "/version", None, "not a version"),
    (b'{"version": true}', "/version", None, "not a version"),
    (b'{"version": {"major": 1}}', "/version", None, "not a version"),
    (b'{"version": ""}', "/version", None, "not a version"),
    (b"<html>1.0</html>", "/version", None, "not JSON"),
    (b"no digits here", "/version", r"(\d+)", "does not match"),
])
def test_a_version_that_cannot_be_read_is_no_version(body: bytes, pointer: str,
                                                     pattern: str | None, says: str) -> None:
    read = read_version(body, pointer, pattern)
    assert read.version is None and says in read.problem


LIST_HOSTS = """
playbook: playbooks/ledger_deploy.yml

  play #1 (app_primary): Deploy ledger	TAGS: []
    pattern: ['app_primary']
    hosts (2):
      primary-2
      primary-1

  play #2 (lb): Reload	TAGS: []
    pattern: ['lb']
    hosts (0):

  play #3 (app): Smoke	TAGS: []
    pattern: ['app']
    hosts (1):
      backup-1
"""


def test_list_hosts_output_gives_the_hosts_a_playbook_targets() -> None:
    assert listed_hosts(LIST_HOSTS, ["backup-1", "backup-2", "primary-1"]) == [
        "backup-1", "primary-1"]
    assert listed_hosts(LIST_HOSTS.replace("      backup-1\n", ""), ["backup-1"]) == []


@pytest.mark.parametrize(("asked", "ran", "matched_none"), [
    (["backup-1"], [], True),  # "skipping: no hosts matched", exit 0
    (["backup-1", "backup-2"], ["backup-2"], False),
    ([], [], False),  # no --limit: whatever the playbook targets
])
def test_a_run_limited_to_hosts_no_play_matched_is_not_a_success(
        tmp_path: Path, asked: list[str], ran: list[str], matched_none: bool) -> None:
    result = PlaybookResult("run", "successful", 0, 1.0, tmp_path, {h: HostOutcome(ok=1)
                                                                  for h in ran},
                            asked=asked)
    assert result.matched_none is matched_none
    assert result.succeeded is not matched_none
    if matched_none:
        assert "no play matched backup-1" in failure_summary(result)


@pytest.mark.parametrize(("releases", "manifest", "covered"), [
    (["../releases/ledger-*.yml"], "examples/releases/ledger-1.1.0.yml", True),
    (["../releases/ledger-*.yml"], "examples/releases/postgresql/ledger-1.1.0.yml", False),
    (["../releases/ledger-1.1.0.yml"], "examples/releases/ledger-1.2.0.yml", False),
    ([], "examples/releases/ledger-1.1.0.yml", False),  # a plan that lists none opts out
])
def test_a_plan_covers_the_manifests_its_releases_name(releases: list[str], manifest: str,
                                                       covered: bool) -> None:
    assert covers(PLAN, releases, ROOT / manifest) is covered


def test_the_dr_plan_names_each_hosts_version_and_the_skew_risk() -> None:
    plan, _ = load_plan(PLAN)
    hosts = {"app_primary": ["primary-1"], "app_backup": ["backup-1"], "lb": ["lb-1"]}
    skewed = dr_plan_markdown(plan, release="ledger-1.1.0", hosts=hosts, last_drill=None,
                              generated="now", versions={"primary-1": "1.1.0",
                                                         "backup-1": "1.0.0"},
                              release_version="1.1.0")
    assert "primary-1 (1.1.0)" in skewed and "backup-1 (1.0.0)" in skewed
    assert "Risk: version skew" in skewed
    level = dr_plan_markdown(plan, release="ledger-1.1.0", hosts=hosts, last_drill=None,
                             generated="now", versions={"primary-1": "1.1.0",
                                                        "backup-1": "1.1.0"},
                             release_version="1.1.0")
    assert "Risk: version skew" not in level


def test_apply_finds_the_plan_that_covers_its_manifest_through_the_journal(
        tmp_path: Path) -> None:
    manifest = load_manifest(ROOT / "examples" / "releases" / "ledger-1.1.0.yml")
    with Journal(tmp_path / "journal.sqlite") as journal:
        assert covering_plan(journal, manifest) == (None, None)  # no plan used yet
        gone = tmp_path / "elsewhere" / "plan.yml"
        journal.begin_continuity("replication", "ledger", "lab", {"plan": str(gone)})
        found, why = covering_plan(journal, manifest)
        assert found is None and why is not None and "not on this machine" in why
        journal.begin_continuity("replication", "ledger", "lab", {"plan": str(PLAN)})
        assert covering_plan(journal, manifest) == (PLAN, None)  # lists ledger-*.yml
        other = load_manifest(ROOT / "examples" / "releases" / "postgresql"
                              / "ledger-1.1.0.yml")
        assert covering_plan(journal, other)[0] is None  # not under ../releases/ledger-*


class RecordingLb:
    """The load balancer's side of a failback's hold, as calls recorded: the backups'
    requests in progress end after ``draining`` polls (never when None)."""

    def __init__(self, maintenance: list[str], draining: int | None) -> None:
        self.maintenance, self.draining, self.calls = set(maintenance), draining, []

    def in_maintenance(self, hosts: list[str]) -> list[str]:
        return [h for h in hosts if h in self.maintenance]

    def activate(self, active: list[str], standby: list[str]) -> None:
        self.calls.append((sorted(active), sorted(standby)))
        self.maintenance = (self.maintenance - set(active)) | set(standby)

    def in_flight(self, _hosts: list[str]) -> int:
        if self.draining is None:
            return 1
        self.draining = max(0, self.draining - 1)
        return self.draining


def failback_with(lb: RecordingLb, tmp_path: Path) -> _Failback:
    site = SimpleNamespace(lb=lb, backups=["backup-1", "backup-2"], primaries=["primary-1"],
                           healthy=lambda _host, timeout: True)
    ctx = SimpleNamespace(site=site)
    return _Failback(ctx, StepRunner("failback", lambda _line: None), tmp_path,  # type: ignore[arg-type]
                     "primary-1", "backup-1", "fb1")


def test_a_failback_holds_writes_until_the_backups_requests_end(tmp_path: Path) -> None:
    """backup-2 was already out of service (a drill's leftover, a standby): it stays out;
    backup-1 leaves for the last copy and comes back with the switch."""
    lb = RecordingLb(["backup-2"], draining=3)
    work = failback_with(lb, tmp_path)
    work.hold_writes()
    assert lb.calls == [([], ["backup-1"])] and lb.draining == 0
    work.switch()
    assert lb.calls[1:] == [(["primary-1"], []), (["backup-1"], [])]
    assert lb.maintenance == {"backup-2"}
    assert work.held_s is not None and work.held == []


def test_a_hold_whose_requests_do_not_end_gives_the_backups_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules[_Failback.__module__], "DRAIN_S", 0.2)
    lb = RecordingLb([], draining=None)
    work = failback_with(lb, tmp_path)
    with pytest.raises(ContinuityError, match="requests still in progress on backup-1"):
        work.hold_writes()
    work.release_writes()  # what failback() does on its way out, error or cancel
    assert lb.maintenance == set()
    assert lb.calls[-1] == (["backup-1", "backup-2"], [])
