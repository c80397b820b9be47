"""Business continuity on the real lab: bad plans, a site-loss drill, failover with the
primary site unreachable, and failback with its catch-up report.

The tests of this module run in order on one lab (2 primaries, 1 backup at 127.0.9.100)
whose primary site runs ledger 1.1.0, released through relctl (the journal's last good
release); the backup site, cold until then, followed that release (its continuity plan
lists the manifest), so it is a warm standby.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
import pytest
import yaml

from controller.adapters import http
from controller.adapters.haproxy import RuntimeApi
from controller.journal import Journal
from tests.integration.conftest import RunningLab, start_lab, stop_lab
from tests.integration.continuity_helpers import (
    Teller,
    bring_primary_site_back,
    kill_primary_site,
    read,
    served_by,
    write,
)
from tests.relctl_cli import RELCTL, ROOT, deploy_ledger, example_text, relctl, relctl_json

pytestmark = pytest.mark.lab
PLAN = ROOT / "examples" / "continuity" / "ledger-lab.yml"
PROBE = "continuity-probe"  # the account of the plan's synthetic record-transactions check


# The release the site runs needs a UAT sign-off and announces itself on a webhook nobody
# listens to (port 9 on loopback refuses connections): a dead channel.
GUARDED = """
signoff:
  required: [uat]
notify:
  channels:
    - {kind: webhook, url: "http://127.0.0.1:9/hooks/T0KEN-SECRET"}
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    folder = tmp_path_factory.mktemp("continuity")
    manifest = folder / "guarded-1.1.0.yml"
    # This module proves continuity, not the load gate (test_release does): no Locust
    # gate, so a noisy 2-core machine cannot roll the site's release back.
    release = yaml.safe_load(example_text(ROOT / "examples/releases/ledger-1.1.0.yml"))
    release["gates"]["locust"] = None
    manifest.write_text(yaml.safe_dump(release, sort_keys=False) + GUARDED)
    # The plan covers the release: `apply` brings the backup site to it once the
    # primaries pass (the plan is found through the journal: replicated once first).
    plan = folder / "covering-plan.yml"
    plan.write_text(PLAN.read_text().replace("../../loadtests", str(ROOT / "loadtests"))
                    .replace('releases: ["../releases/ledger-*.yml"]', "releases: [guarded-*.yml]"))
    running = start_lab(primary=2, backup=1, base_address="127.0.9.100")
    try:
        done = deploy_ledger(running.state_dir, "1.0.0")
        assert done.returncode == 0, done.stderr
        done = relctl(running.state_dir, "replicate", "--plan", str(plan))
        assert done.returncode == 0, done.stderr  # to a backup site that runs nothing yet
        refused = relctl(running.state_dir, "apply", str(manifest), "--yes")
        assert refused.returncode == 11, refused.stderr
        assert "uat" in refused.stderr
        assert relctl_json(running.state_dir, "history")["releases"] == []
        signed = relctl(running.state_dir, "signoff", "ledger-1.1.0", "--role", "uat",
                        "--by", "Uma Tester")
        assert signed.returncode == 0, signed.stderr
        done = relctl(running.state_dir, "apply", str(manifest), "--yes", "--json")
        assert done.returncode == 0, done.stderr  # the dead webhook fails nothing
        followed = json.loads(done.stdout)["backup_site"]
        assert followed["ok"] and followed["hosts"] == ["backup-1"], followed
        backup = f"http://{running.hosts('app_backup')[0]['address']}:8080/version"
        assert http.request("GET", backup).json()["version"] == "1.1.0"
        yield running
    finally:
        stop_lab(running)


def test_the_dead_notice_channel_was_journaled_without_its_secret(site: RunningLab) -> None:
    with Journal(site.state_dir / "journal.sqlite") as journal:
        record = journal.find_release("ledger-1.1.0")
        assert record is not None and record.state == "released"
        lines = [e.message for e in journal.events(record.id)]
    failed = [line for line in lines if line.startswith("notice ") and "FAILED" in line]
    assert {line.split()[1] for line in failed} >= {"start", "success"}, lines
    assert not any("T0KEN-SECRET" in line for line in lines)


def test_status_shows_what_each_site_runs(site: RunningLab) -> None:
    """The backup site followed the release: every host of both sites reports it, no skew."""
    status = relctl(site.state_dir, "status", "--plan", str(PLAN), "--json")
    assert status.returncode == 0, status.stderr
    sites = json.loads(status.stdout)["sites"]
    assert sites["last_good"] == "1.1.0" and sites["skew"] is None, sites
    assert {site_name: {h: r["version"] for h, r in hosts.items()}
            for site_name, hosts in sites["sites"].items()} == {
        "primary": {"primary-1": "1.1.0", "primary-2": "1.1.0"},
        "backup": {"backup-1": "1.1.0"}}
    text = relctl(site.state_dir, "status", "--plan", str(PLAN))
    assert "backup   backup-1: 1.1.0" in text.stdout, text.stdout
    # the implementation plan of that release reads the same from the journal alone
    with Journal(site.state_dir / "journal.sqlite") as journal:
        record = journal.find_release("ledger-1.1.0")
        assert record is not None
    shown = relctl_json(site.state_dir, "plan", record.manifest_path)
    assert shown["backup_plan"] and shown["backup_plan"].endswith("covering-plan.yml"), shown
    assert {(s["site"], s["host"], s["now"], s["after"]) for s in shown["sites"]} == {
        ("primary", "primary-1", "1.1.0", "1.1.0"), ("primary", "primary-2", "1.1.0", "1.1.0"),
        ("backup", "backup-1", "1.1.0", "1.1.0")}
    assert not any("does not follow" in r["title"] for r in shown["risks"])


def run(lab: RunningLab, *args: str) -> tuple[int, dict[str, Any], str]:
    result = relctl(lab.state_dir, *args, "--plan", str(PLAN), "--json")
    document = json.loads(result.stdout) if result.stdout.strip() else {}
    return result.returncode, document, result.stderr


@pytest.mark.parametrize(("old", "new", "field", "message"), [
    ("backup: app_backup", "backup: app_bakup", "sites.backup",
     "no hosts in inventory group 'app_bakup'"),
    ("rto: 10s", "rto: 0s", "functions[0].rto", "greater than 0"),
    ("rto: 10s", "rto: soon", "functions[0].rto", "not a duration"),
])
def test_bad_plan_is_refused_before_any_change(site: RunningLab, tmp_path: Path, old: str,
                                               new: str, field: str, message: str) -> None:
    bad = tmp_path / "plan.yml"
    bad.write_text(PLAN.read_text().replace("../../loadtests", str(ROOT / "loadtests"))
                   .replace(old, new, 1))
    result = relctl(site.state_dir, "failover", "--plan", str(bad), "--yes")
    assert result.returncode == 2, result.stderr
    assert f"{bad}:" in result.stderr and field in result.stderr and message in result.stderr
    assert served_by(site) == "primary-1"


def test_site_loss_drill_fails_over_and_measures(site: RunningLab) -> None:
    before = [write(site, "drill-before", amount) for amount in (101, 202)]
    code, report, stderr = run(site, "drill", "site-loss", "--no-restore")
    assert code == 0, stderr
    measures = report["figures"]["measures"]
    assert report["figures"]["verdict"] == "pass"
    assert report["figures"]["restored"] is False  # --no-restore: still failed over
    # the backup site followed the release: the failover deployed nothing
    events = [what for _, what in report["figures"]["timeline"]]
    assert not any("deploying" in what for what in events), events
    assert any("backup site healthy on 1.1.0" in what for what in events), events
    assert 0 < measures["rto_s"] <= 10 and measures["rpo_s"] is not None
    assert measures["detection_s"] is not None and measures["switch_s"] < 1
    assert measures["served_by_after"] == ["backup-1"]
    # The LB serves from the backup site, and the data replicated before the fault is there.
    assert served_by(site) == "backup-1"
    for tx in before:
        assert read(site, tx["id"]) == (200, tx, "backup-1")
    stored = relctl_json(site.state_dir, "drill", "report", str(report["id"]))
    assert stored["measures"]["rto_s"] == measures["rto_s"]
    assert Path(stored["files"]["dr_plan"]).read_text().count("record-transactions") >= 1
    page = Path(stored["files"]["html"]).read_text()  # the probe's timeline, moments marked
    assert "<svg" in page and 'data-moment="fault"' in page and "backup-1" in page
    assert measures["load_requests_idempotent"] + measures["load_requests_non_idempotent"] \
        == measures["load_requests"]
    shown = relctl(site.state_dir, "drill", "report", str(report["id"]), "--junit",
                   str(site.state_dir / "drill.xml"))
    assert "## Targets per critical function" in shown.stdout
    # JUnit for CI: the drill's own file and --junit agree; every RTO and RPO case passed
    junit = (site.state_dir / "drill.xml").read_text()
    assert Path(stored["files"]["junit"]).read_text() == junit
    cases = {c.get("name"): [k.tag for k in c if k.tag in ("failure", "error")]
             for c in ET.fromstring(junit).iter("testcase")}
    assert {"drill", "rto[record-transactions]", "rpo[record-transactions]",
            "failed-requests"} <= set(cases)
    assert all(not outcome for outcome in cases.values()), cases


def test_failback_after_the_drill_brings_the_primary_back(site: RunningLab) -> None:
    bring_primary_site_back(site)
    code, outcome, stderr = run(site, "failback", "--yes")
    assert code == 0, stderr
    assert served_by(site) == "primary-1"
    assert outcome["figures"]["served_by"] == ["primary-1"]


def test_failover_with_primary_unreachable_then_failback_catch_up(site: RunningLab) -> None:
    replicated = [write(site, "alice", amount) for amount in (1000, 2000)]
    code, _, stderr = run(site, "replicate")
    assert code == 0, stderr
    late = [write(site, "bob", amount) for amount in (-300, -400)]  # after the replica
    kill_primary_site(site)

    code, outcome, stderr = run(site, "failover", "--yes")
    assert code == 0, stderr
    assert outcome["figures"]["served_by"] == ["backup-1"]
    assert outcome["figures"]["rpo_s"] is not None
    for tx in replicated:
        assert read(site, tx["id"]) == (200, tx, "backup-1")
    for tx in late:
        assert read(site, tx["id"])[1] != tx  # lost with the site, until failback
    during = write(site, "erin", 777)  # written on the backup site during the outage

    bring_primary_site_back(site)
    with Teller(site.url, "gina") as teller:  # payments through the LB all along
        code, outcome, stderr = run(site, "failback", "--yes")
    assert code == 0, stderr
    catch_up = outcome["figures"]["catch_up"]
    assert catch_up["missing_on_backup"] == {"tx": late}
    written_on_backup = [r for r in catch_up["only_on_backup"]["tx"]
                         if r["account"] not in (PROBE, "gina")]
    assert written_on_backup == [during]
    assert read(site, during["id"]) == (200, during, "primary-1")
    # Every payment acknowledged while the failback ran, on the backup site before the
    # switch or on the primaries after it, is there: none is left behind on the backup.
    assert 0 < outcome["figures"]["writes_held_s"] < 5, outcome["figures"]  # the LB's hold
    acked = [tx for _, tx in teller.acked]
    assert len(acked) >= 10, acked
    assert [read(site, tx["id"]) for tx in acked] == [(200, tx, "primary-1") for tx in acked]
    report = Path(outcome["figures"]["catch_up_report"]).read_text()
    assert all(f"| {tx['id']} | bob | {tx['amount_cents']} |" in report for tx in late)
    assert not list((site.state_dir / "lab" / "cp").glob("*")), "ssh masters left open"


# -- drills on an inventory relctl did not write ------------------------------------------
# The staging team's own inventory: its own file and group names (east, west, edge), the
# lab's hosts reached over ssh like any servers. The plan declares how site-loss is
# injected and undone (stop and start the service through Ansible) and kills the service
# by its pid file for service-crash: no pid relctl recorded for its lab is used.
LEDGERCTL = "/srv/ledger/current/bin/ledgerctl {} --config /etc/ledger/ledger.conf"


class LabInventoryLoader(yaml.SafeLoader):
    """The lab's inventory, whose service values are Ansible's ``!unsafe`` text."""


LabInventoryLoader.add_constructor(
    "!unsafe", lambda loader, node: loader.construct_scalar(node))


def own_inventory(lab: RunningLab, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    status = relctl_json(lab.state_dir, "lab", "status")
    lab_vars = yaml.load(lab.inventory.read_text(), LabInventoryLoader)["all"]["vars"]
    groups = {"app_primary": "east", "app_backup": "west", "lb": "edge"}
    lines = ["[all:vars]"] + [f"{k}={v}" for k, v in lab_vars.items()
                              if k.startswith("ansible_") or k == "service_manager"]
    for old, new in groups.items():
        lines.append(f"\n[{new}]")
        lines += [f"{h['name']} ansible_host={h['address']}" for h in status["hosts"]
                  if h["group"] == old]
    lines += ["\n[app:children]", "east", "west"]  # the group the service's playbooks target
    inventory = folder / "staging.ini"
    inventory.write_text("\n".join(lines) + "\n")
    cfg = lab.ansible_cfg.read_text()
    cfg = re.sub(r"(?m)^inventory = .*$", f"inventory = {inventory}", cfg)
    cfg = re.sub(r"(?m)^control_path_dir = .*$", f"control_path_dir = {folder / 'cp'}", cfg)
    (folder / "ansible.cfg").write_text(cfg)
    return inventory


def own_plan(lab: RunningLab, folder: Path, **changes: str) -> Path:
    inventory = own_inventory(lab, folder)
    text = (PLAN.read_text().replace("../../loadtests", str(ROOT / "loadtests"))
            .replace("# inventory: omitted: the staging lab's (relctl lab up).",
                     f"inventory: {inventory}")
            .replace("primary: app_primary", "primary: east")
            .replace("backup: app_backup", "backup: west")
            .replace("  group: lb\n", "  group: edge\n")
            .replace("  process_match: ledger.server",
                     "  pid_file: /run/ledger/ledger.pid\n"
                     "  faults:\n"
                     f"    site-loss: {{inject: '{LEDGERCTL.format('stop')}', "
                     f"restore: '{LEDGERCTL.format('start')}'}}\n"
                     "  process_match: ledger.server"))
    for old, new in changes.items():
        text = text.replace(old, new)
    plan = folder / "staging-continuity.yml"
    plan.write_text(text)
    return plan


@pytest.fixture
def staging(tmp_path: Path) -> Iterator[Path]:
    """A short folder for the staging files: ssh's ControlPath must fit a unix socket."""
    folder = Path(tempfile.mkdtemp(prefix="rd-", dir="/tmp"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def lab_pids(lab: RunningLab) -> dict[str, int]:
    return {h["name"]: h["pid"] for h in relctl_json(lab.state_dir, "lab", "status")["hosts"]}


def drill_json(lab: RunningLab, plan: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    result = relctl(lab.state_dir, "drill", *args, "--plan", str(plan), "--json")
    document = json.loads(result.stdout) if result.stdout.strip() else {}
    # what a failed assertion shows: the error, else the drill's problems and timeline
    shown = result.stderr or json.dumps({k: document.get(k) for k in ("message", "warnings",
                                                                      "timeline")}, indent=1)
    return result.returncode, document, shown


def test_drills_need_consent_and_dry_run_touches_nothing(site: RunningLab,
                                                         staging: Path) -> None:
    tmp_path = staging
    plan = own_plan(site, tmp_path)
    records = len(relctl_json(site.state_dir, "drill", "list"))
    runs = changing_runs(site)
    refused = own_plan(site, tmp_path / "refused", **{"drills: allowed": "drills: forbidden"})
    code, _, stderr = drill_json(site, refused, "site-loss")
    assert code == 2, stderr
    assert f"{refused}:" in stderr and "drills" in stderr and "not allowed" in stderr
    production = own_plan(site, tmp_path / "prod", **{"environment: lab": "environment: "
                                                      "production"})
    code, _, stderr = drill_json(site, production, "site-loss")
    assert code == 2 and "--yes-production" in stderr, stderr
    lab_only = own_plan(site, tmp_path / "lab-only", **{"    site-loss: {": "    latency: {"})
    code, _, stderr = drill_json(site, lab_only, "site-loss")
    assert code == 2 and "drill.faults.site-loss" in stderr, stderr

    code, dry, stderr = drill_json(site, plan, "site-loss", "--dry-run")
    assert code == 0, stderr
    assert dry["mode"] == "inventory" and dry["primaries"] == ["primary-1", "primary-2"]
    assert {(f["host"], f["channel"]) for f in dry["faults"]} == {
        ("primary-1", "command"), ("primary-2", "command")}
    # its preflight ran: the same checks as the drill's, every one passed (no way back
    # to check: the plan declares how each fault is undone)
    assert {c["name"] for c in dry["preflight"] if c["ok"]} == {
        "serving", "lb", "reachable", "versions", "deploy", "replication"}, dry["preflight"]
    # nothing touched: no drill journaled, no Ansible run but the preflight's read-only
    # agent (relctl's agent reached through Ansible on this inventory), the primary serves
    assert len(relctl_json(site.state_dir, "drill", "list")) == records
    assert changing_runs(site) == runs
    assert served_by(site) == "primary-1"


def changing_runs(lab: RunningLab) -> list[str]:
    """The Ansible runs in the lab's state directory, but preflight's (the agent's
    read-only hello)."""
    return sorted(p.name for p in (lab.state_dir / "runs").iterdir()
                  if "-preflight-" not in p.name)


@pytest.mark.parametrize(("case", "scenario", "plan_changes", "inventory_changes", "says"), [
    ("a backend the LB lacks", "site-loss", {"backend: ledger": "backend: ledgr"}, {},
     "lb: HAProxy at 127.0.9.100:9999 has no backend 'ledgr'"),
    ("an unreachable backup host", "site-loss", {},
     {"[west]\n": "[west]\nbackup-9 ansible_host=127.0.9.199\n"}, "reachable: backup-9"),
    ("a deploy play that matches no backup host", "site-loss", {},
     {"[app:children]\neast\nwest": "[app:children]\neast"},
     "deploy: no play of ledger-1.1.0's apply playbooks targets backup-1"),
    ("no way to start the service again", "service-crash",
     {"environment: lab": "environment: rehearsal"}, {},
     "way back: no way to start the service again on primary-1"),
])
def test_a_drill_whose_preflight_fails_touches_nothing(
        site: RunningLab, staging: Path, case: str, scenario: str,
        plan_changes: dict[str, str], inventory_changes: dict[str, str], says: str) -> None:
    plan = own_plan(site, staging, **plan_changes)
    inventory = staging / "staging.ini"
    for old, new in inventory_changes.items():
        assert old in inventory.read_text(), case
        inventory.write_text(inventory.read_text().replace(old, new))
    records = len(relctl_json(site.state_dir, "drill", "list"))
    pids, states = lab_pids(site), lb_states()
    for dry in (("--dry-run",), ()):  # the dry run refuses it the same way
        code, _, stderr = drill_json(site, plan, scenario, *dry)
        assert code == 2, f"{case}: {stderr}"
        assert "refused by its preflight, nothing touched" in stderr and says in stderr, stderr
    # nothing touched: no drill or replication journaled, every host and its service up,
    # every server of the LB in service, the primary still serving
    assert len(relctl_json(site.state_dir, "drill", "list")) == records
    assert lab_pids(site) == pids and lb_states() == states
    assert served_by(site) == "primary-1"


def lb_states() -> dict[str, str]:
    """The ledger backend's servers and their states (UP, MAINT...), from HAProxy."""
    return {s.server: s.status for s in RuntimeApi("127.0.9.100:9999").servers()
            if s.backend == "ledger"}


def test_drills_on_a_staging_inventory_of_its_own(site: RunningLab, staging: Path) -> None:
    tmp_path = staging
    plan, pids = own_plan(site, tmp_path), lab_pids(site)
    before = write(site, "staging-before", 303)

    code, crash, stderr = drill_json(site, plan, "service-crash")
    assert code == 0, stderr
    report = crash["figures"]
    assert report["verdict"] == "pass" and report["mode"] == "inventory"
    assert report["restored"] is True  # what its timeline says: the fault undone
    assert {c["name"] for c in report["preflight"]} >= {
        "serving", "lb", "reachable", "versions", "deploy", "way back", "replication"}
    assert [f["channel"] for f in report["faults"]] == ["pid-file"]
    assert report["measures"]["served_by_after"] == ["primary-2"]
    assert served_by(site) == "primary-1"  # restored: primary-1 serves again

    code, loss, stderr = drill_json(site, plan, "site-loss")
    assert code == 0, stderr
    report = loss["figures"]
    assert report["verdict"] == "pass" and report["measures"]["served_by_after"] == ["backup-1"]
    assert {f["channel"] for f in report["faults"]} == {"command"}
    assert any("failback" in what for _, what in report["timeline"])
    # every host restored, the primary site serves, the data written before is there
    assert served_by(site) == "primary-1"
    assert read(site, before["id"]) == (200, before, "primary-1")
    assert lab_pids(site) == pids  # no lab host was killed: the faults went through Ansible
    assert not list((tmp_path / "cp").glob("*")), "ssh masters left open"


def test_drill_restore_after_the_controller_was_killed(site: RunningLab,
                                                       staging: Path) -> None:
    plan = own_plan(site, staging)
    journal_path = site.state_dir / "journal.sqlite"
    with Journal(journal_path) as journal:
        last = max((r.id for r in journal.continuity_records(limit=1)), default=0)
    controller = subprocess.Popen(
        [*RELCTL, "--state-dir", str(site.state_dir), "drill", "site-loss", "--plan",
         str(plan), "--json"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runtime = RuntimeApi(f"{urlsplit(site.url).hostname}:9999")

    def switched() -> bool:  # relctl's failover put the primaries in maintenance
        states = {s.server: s.status for s in runtime.servers() if s.backend == "ledger"}
        return all(states[h].startswith("MAINT") for h in ("primary-1", "primary-2"))

    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not switched():
            assert controller.poll() is None, "the drill ended before it failed over"
            time.sleep(0.05)
        assert switched() and served_by(site) == "backup-1"
    finally:
        controller.kill()  # kill -9, mid-drill: failed over, faults in place
        controller.wait()
    with Journal(journal_path) as journal:
        drill = next(r for r in journal.continuity_records("drill", limit=5) if r.id > last)
    assert drill.state == "running" and drill.detail["faults_state"] == "injected"

    code, restored, stderr = drill_json(site, plan, "restore", str(drill.id))
    assert code == 0, stderr
    assert any("failback" in step for step in restored["done"])
    for host in ("primary-1", "primary-2"):
        assert http.request("GET", f"http://{address_of(site, host)}:8080/health").status == 200
    assert served_by(site) == "primary-1"
    with Journal(journal_path) as journal:
        record = journal.continuity_record(drill.id)
    assert record.state == "failed" and record.detail["faults_state"] == "restored"
    code, again, stderr = drill_json(site, plan, "restore", str(drill.id))
    assert code == 0 and "already restored" in again["done"][0], stderr
    assert not [p for p in psutil.process_iter(["cmdline"])
                if "locust" in " ".join(p.info["cmdline"] or []) and
                str(site.state_dir) in " ".join(p.info["cmdline"] or [])]


def address_of(lab: RunningLab, host: str) -> str:
    return next(str(h["address"]) for h in relctl_json(lab.state_dir, "lab", "status")["hosts"]
                if h["name"] == host)


def test_test_failover_proves_the_backup_without_touching_the_primary(
        site: RunningLab) -> None:
    samples: list[tuple[int, str]] = []
    stop = threading.Event()

    def probe() -> None:  # users, through the LB, every 50 ms
        while not stop.is_set():
            answer = http.request("GET", f"{site.url}/health", timeout=1)
            samples.append((answer.status, answer.served_by))
            stop.wait(0.05)

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    try:
        code, outcome, stderr = run(site, "drill", "test-failover")
    finally:
        stop.set()
        prober.join(timeout=5)
    assert code == 0, stderr
    report = outcome["figures"]
    assert report["scenario"] == "test-failover" and report["verdict"] == "pass"
    measures = report["measures"]
    assert set(measures["answered_by"]) == {"record-transactions", "service-health"}
    assert all(hosts == ["backup-1"] for hosts in measures["answered_by"].values())
    assert 0 < measures["rto_s"] <= 30
    # users never noticed: every probe answered 200, by the primary
    assert len(samples) > 20 and set(samples) == {(200, "primary-1")}, set(samples)
    backends = relctl_json(site.state_dir, "lab", "status")["backends"]  # the runtime API's
    states = {b["server"]: b["status"] for b in backends if b["backend"] == "ledger"}
    assert states["primary-1"].startswith("UP") and states["primary-2"].startswith("UP")
    with Journal(site.state_dir / "journal.sqlite") as journal:
        replica = journal.continuity_record(measures["replica_id"])
    assert replica.detail["tested"][-1]["test_failover"] == report["id"]
    assert replica.detail["tested"][-1]["ok"] is True
