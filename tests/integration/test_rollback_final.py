"""A rollback that loses nothing and is final, on the real lab (its own addresses,
127.0.80.10-11):

- a client (the continuity tests' Teller) writes through HAProxy during a release that
  fails, with and without a data migration: every acknowledged transaction reads back,
  with the same content, after it;
- SIGTERM (a cancelled CI job) while a playbook task runs: after relctl exits nothing of
  the release runs and the host's file does not change any more;
- a release of file items rolled back: the restored host is re-checked with the previous
  good release's gate; the interrupted release is applied again without --force;
- ``apply --dry-run`` of a playbook with a YAML error: exit 8, Ansible's error shown.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from controller.adapters import http
from tests.integration.ansible_cli import shell
from tests.integration.conftest import RunningLab, start_lab, stop_lab
from tests.integration.continuity_helpers import Teller
from tests.integration.ledger_http import served_versions
from tests.relctl_cli import RELCTL, ROOT, deploy_ledger, example_text, relctl

pytestmark = pytest.mark.lab
RELEASES = ROOT / "examples" / "releases"


@pytest.fixture(scope="module")
def lab() -> Iterator[RunningLab]:
    """One primary (every write goes to one database) and one backup."""
    running = start_lab(primary=1, backup=1, base_address="127.0.80.10")
    yield running
    stop_lab(running)


def missing_or_changed(lab: RunningLab, acked: dict[int, dict[str, Any]]) -> list[int]:
    """The acknowledged ids that do not read back through the LB as they were written."""
    wrong = []
    for tx_id, wanted in sorted(acked.items()):
        answer = http.request("GET", f"{lab.url}/tx/{tx_id}", timeout=10)
        body = answer.json() if answer.status == 200 else None
        if not isinstance(body, dict) or {k: body.get(k) for k in wanted} != wanted:
            wrong.append(tx_id)
    return wrong


def wait_healthy(lab: RunningLab, version: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        answer = http.request("GET", f"{lab.url}/version", timeout=5)
        if answer.status == 200 and answer.json() == {"version": version}:
            return
        time.sleep(0.3)
    raise AssertionError(f"{lab.url} never served {version}")


def broken_release(lab: RunningLab) -> Path:
    """ledger-2.0.1 (testinfra fails on its canary) without its Locust gate: the teller's
    writes are what this module follows, and the gate's baseline load only costs time."""
    release = yaml.safe_load(example_text(RELEASES / "ledger-2.0.1.yml"))
    release["gates"]["locust"] = None
    path = lab.state_dir / "ledger-2.0.1.yml"
    path.write_text(yaml.safe_dump(release, sort_keys=False))
    return path


@pytest.mark.parametrize("base", ["1.1.0", "1.2.0"], ids=["with-migration", "no-migration"])
def test_every_acknowledged_write_survives_a_rollback(lab: RunningLab, base: str) -> None:
    """2.0.1 is broken (testinfra fails on the canary). On 1.1.0 it converts the data to
    schema 2 first; on 1.2.0 the schema stays. Either way nothing acknowledged is lost."""
    deployed = deploy_ledger(lab.state_dir, base)
    assert deployed.returncode == 0, deployed.stderr
    wait_healthy(lab, base)
    with Teller(lab.url, "writer") as teller:
        time.sleep(1)
        result = relctl(lab.state_dir, "apply", str(broken_release(lab)), "--yes",
                        "--json", "--force")
        time.sleep(1)
    assert result.returncode == 3, result.stdout[-4000:] + result.stderr
    outcome = json.loads(result.stdout)
    host = lab.hosts("app_primary")[0]["name"]
    report = outcome["data"][host]["ledger-db"]
    assert report["decision"] == ("carried" if base == "1.1.0" else "kept"), report
    assert report.get("not_carried", 0) == 0, report["listed"]
    acked = {int(tx["id"]): {"account": tx["account"], "amount_cents": tx["amount_cents"]}
             for _, tx in teller.acked}
    assert len(acked) > 20
    assert missing_or_changed(lab, acked) == []
    assert served_versions(lab) == {base}
    # the next transaction gets a new id: no id handed out twice
    answer = http.request("POST", f"{lab.url}/tx", {"account": "late", "amount_cents": 1})
    assert answer.status == 201 and int(answer.json()["id"]) > max(acked)
    catch_up = lab.state_dir / "rollbacks" / "ledger-2.0.1" / "catch-up.json"
    assert json.loads(catch_up.read_text())["data"][host]["ledger-db"]["decision"] == (
        report["decision"])
    assert oct(catch_up.stat().st_mode & 0o777) == "0o600"


# -- a service no one here wrote: one config file, released by a playbook -------------

PLAYBOOK = """\
- hosts: all
  gather_facts: false
  tasks:
    - name: The config folder
      ansible.builtin.file: {path: /etc/svc, state: directory, mode: "0755"}
    - name: The config file of this version
      ansible.builtin.copy:
        dest: /etc/svc/svc.conf
        content: "version={{ svc_version }}\\n"
        mode: "0644"
    - name: A slow step when the test asks for one, which writes at its own end
      ansible.builtin.shell: >-
        test ! -e /etc/svc/slow ||
        (sleep 20 && echo "version={{ svc_version }} (slow)" > /etc/svc/svc.conf)
      changed_when: false
    - name: A last write after it
      ansible.builtin.copy:
        dest: /etc/svc/svc.conf
        content: "version={{ svc_version }} (final)\\n"
        mode: "0644"
"""
GATE = """\
import os


def test_config_names_the_version(host):
    want = os.environ["EXPECTED_VERSION"]
    assert host.file("/etc/svc/svc.conf").content_string.startswith(f"version={want}")
"""
MANIFEST = """\
release: svc-{version}
version: "{version}"
service: svc
environment: lab
targets: app_primary
items:
  - {{kind: file, name: svc-config, path: /etc/svc/svc.conf}}
playbooks:
  apply: [{playbook}]
extravars: {{svc_version: "{version}"}}
gates:
  testinfra:
    - tests: gate_svc.py
owners:
  release_manager: Ada Ops
"""


@pytest.fixture(scope="module")
def svc(lab: RunningLab, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The service's repository (outside the source tree), and version 1 released."""
    repo = tmp_path_factory.mktemp("svc-repo")
    (repo / "site.yml").write_text(PLAYBOOK)
    (repo / "broken.yml").write_text("- hosts: all\n  tasks: [ {name: x\n")
    (repo / "gate_svc.py").write_text(GATE)
    for version in ("1", "2"):
        (repo / f"svc-{version}.yml").write_text(
            MANIFEST.format(version=version, playbook="site.yml"))
    (repo / "svc-broken.yml").write_text(MANIFEST.format(version="3", playbook="broken.yml"))
    first = relctl(lab.state_dir, "apply", str(repo / "svc-1.yml"), "--yes", "--json")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr
    return repo


def host_file(lab: RunningLab, command: str) -> str:
    return shell(lab.ansible_cfg, lab.hosts("app_primary")[0]["name"], command)


def wait_for_phase(journal: Path, phase: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with sqlite3.connect(f"file:{journal}?mode=ro", uri=True) as conn:
                if conn.execute("SELECT 1 FROM phases WHERE name = ? AND state = 'running'",
                                (phase,)).fetchone():
                    return
        except sqlite3.OperationalError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"never reached phase {phase}")


def test_sigterm_in_a_playbook_leaves_nothing_running_and_nothing_changing(
        lab: RunningLab, svc: Path) -> None:
    host_file(lab, "touch /etc/svc/slow")
    controller = subprocess.Popen(
        [*RELCTL, "--state-dir", str(lab.state_dir), "apply", str(svc / "svc-2.yml"),
         "--yes", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    try:
        wait_for_phase(lab.state_dir / "journal.sqlite", "apply:canary")
        deadline = time.monotonic() + 30  # the slow task runs on the host
        while "version=2" not in host_file(lab, "cat /etc/svc/svc.conf"):
            assert time.monotonic() < deadline, "the first task never ran"
            time.sleep(0.2)
        slow_ends = time.monotonic() + 20  # the slow task (sleep 20) follows this write
        time.sleep(1)
        controller.send_signal(signal.SIGTERM)
        out, err = controller.communicate(timeout=300)
    finally:
        if controller.poll() is None:
            controller.kill()
        host_file(lab, "rm -f /etc/svc/slow")
    assert controller.returncode == 3, out[-3000:] + err
    outcome = json.loads(out)
    assert "interrupted by SIGTERM" in outcome["message"]
    # nothing of the release is alive: no process runs its playbook or the gate
    left = [p.info for p in psutil.process_iter(["pid", "cmdline"])
            if any(str(svc) in part for part in p.info["cmdline"] or [])]
    assert left == []
    restored = host_file(lab, "cat /etc/svc/svc.conf")
    assert restored == "version=1 (final)"
    # nothing of the release runs on the host either: the task in flight was stopped
    shown = json.loads(relctl(lab.state_dir, "show", "svc-2", "--json").stdout)
    rollback = next(p for p in shown["phases"] if p["name"] == "rollback")
    assert any("sleep 20" in line for lines in rollback["detail"]["stopped_on_hosts"].values()
               for line in lines), rollback
    assert "sleep 20" not in host_file(lab, "ps -eo args")
    # past the moment the slow task would have ended and written "version=2 (slow)"
    time.sleep(max(0.0, slow_ends + 5 - time.monotonic()))
    assert host_file(lab, "cat /etc/svc/svc.conf") == restored
    # the journal says the playbook was stopped, not that it ended well
    with sqlite3.connect(f"file:{lab.state_dir / 'journal.sqlite'}?mode=ro", uri=True) as conn:
        states = conn.execute("SELECT c.state FROM children c JOIN releases r ON "
                              "r.id = c.release_id WHERE r.name = 'svc-2' AND "
                              "c.program = 'ansible-playbook'").fetchall()
    assert ("stopped",) in states, states
    # the restored host was re-checked with svc-1's gate (the file item names no version)
    phases = {p["name"]: p for p in outcome["phases"]}
    assert phases["gate:testinfra:restored-1"]["state"] == "ok", outcome["phases"]
    shown = json.loads(relctl(lab.state_dir, "show", "svc-2", "--json").stdout)
    assert shown["bad"] is False
    assert {h["after"] for h in shown["hosts"]} == {"1"}


def test_an_interrupted_release_applies_again_without_force(lab: RunningLab,
                                                            svc: Path) -> None:
    again = relctl(lab.state_dir, "apply", str(svc / "svc-2.yml"), "--yes", "--json")
    assert again.returncode == 0, again.stderr
    assert host_file(lab, "cat /etc/svc/svc.conf") == "version=2 (final)"


def test_dry_run_of_a_broken_playbook_is_exit_8_with_the_error(lab: RunningLab,
                                                               svc: Path) -> None:
    before = host_file(lab, "cat /etc/svc/svc.conf")
    dry = relctl(lab.state_dir, "apply", str(svc / "svc-broken.yml"), "--dry-run", "--json")
    assert dry.returncode == 8, dry.stdout + dry.stderr
    outcome = json.loads(dry.stdout)
    assert "check mode failed" in outcome["message"]
    assert "ERROR" in outcome["message"] and "\x1b[" not in outcome["message"]
    assert "Warning" not in outcome["message"]  # Ansible's own error, not the noise before
    assert outcome["seconds"] > 0
    assert host_file(lab, "cat /etc/svc/svc.conf") == before
    dry_ok = relctl(lab.state_dir, "apply", str(svc / "svc-1.yml"), "--dry-run", "--json")
    assert dry_ok.returncode == 0, dry_ok.stdout + dry_ok.stderr
    host = lab.hosts("app_primary")[0]["name"]
    assert json.loads(dry_ok.stdout)["changes"][host]  # 2 -> 1 would change the file
