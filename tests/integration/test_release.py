"""The release pipeline on the real lab: release, gate failures, rollback, lock, resume.

The tests of this module run in order on one lab, as a release train would:
1.0.0 deployed -> 1.1.0 released -> 2.0.1 and 2.0.0 rolled back -> lock, bad input,
and a controller killed mid-release.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml
from PIL import Image

from controller.journal import Holder, Journal
from controller.reports.release_report import BASELINE_COLOUR, CANDIDATE_COLOUR, PHASE_COLOURS
from tests.integration.ansible_cli import ad_hoc
from tests.integration.conftest import RunningLab
from tests.integration.ledger_http import served_versions
from tests.integration.ledger_state import LEDGERCTL, STOP_LEDGER, database_kept, fingerprints
from tests.relctl_cli import RELCTL, ROOT, deploy_ledger, example_text, relctl, relctl_json

pytestmark = pytest.mark.lab
RELEASES = ROOT / "examples" / "releases"


def http(method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, None


def apply(lab: RunningLab, manifest: str) -> subprocess.CompletedProcess[str]:
    return relctl(lab.state_dir, "apply", str(RELEASES / manifest), "--yes", "--json")


@pytest.fixture(scope="module")
def train(lab: RunningLab) -> Iterator[dict[str, Any]]:
    """The lab's primary site on ledger 1.0.0 with transactions written through HAProxy."""
    deploy = deploy_ledger(lab.state_dir, "1.0.0")
    assert deploy.returncode == 0, deploy.stderr
    deadline = time.monotonic() + 30  # HAProxy's health checks see the started servers
    while http("GET", f"{lab.url}/version")[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.5)
    written = []
    for amount in (1250, -300, 4200):
        status, tx = http("POST", f"{lab.url}/tx", {"account": "alice", "amount_cents": amount})
        assert status == 201
        written.append({"tx": tx, "host": holder_of(lab, tx)})
    try:
        yield {"written": written}
    finally:  # the session lab is shared: its database is left past 1.2.0's point of no
        reset_ledger(lab)  # return, which the next module's deploy of 1.0.0 would refuse


def reset_ledger(lab: RunningLab) -> None:
    """The ledger off the lab's app hosts: stopped, its code and database removed (a
    database converted past a point of no return included); the next deploy starts anew."""
    done = ad_hoc(lab.ansible_cfg, "app_primary:app_backup", "ansible.builtin.shell",
                  f"if [ -x {LEDGERCTL} ]; then {STOP_LEDGER}; fi; "
                  "rm -rf /srv/ledger /var/lib/ledger")
    assert done and all(r.get("rc") == 0 for r in done.values()), done


def holder_of(lab: RunningLab, tx: dict[str, Any]) -> str:
    """The primary whose own database holds this transaction (each host has its own)."""
    holders = [h["address"] for h in lab.hosts("app_primary")
               if http("GET", f"http://{h['address']}:8080/tx/{tx['id']}") == (200, tx)]
    assert len(holders) == 1, (tx, holders)
    return holders[0]


def test_ledger_1_0_0_answers_through_haproxy(lab: RunningLab, train: dict[str, Any]) -> None:
    assert http("GET", f"{lab.url}/version") == (200, {"version": "1.0.0"})
    assert served_versions(lab) == {"1.0.0"}


def test_release_1_1_0_reaches_every_host(lab: RunningLab, train: dict[str, Any]) -> None:
    result = apply(lab, "ledger-1.1.0.yml")
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["state"] == "released"
    assert served_versions(lab) == {"1.1.0"}
    assert http("GET", f"{lab.url}/version") == (200, {"version": "1.1.0"})
    shown = relctl_json(lab.state_dir, "show", "ledger-1.1.0")
    assert shown["state"] == "released"
    status = relctl_json(lab.state_dir, "status")
    assert [r["release"] for r in status["last_good"]] == ["ledger-1.1.0"]
    assert status["locks"] == [] and status["unfinished"] == []
    assert {h["state"] for h in shown["hosts"]} == {"verified"}
    assert all(s["verified"] and len(s["sha256"]) in (0, 64) for s in shown["snapshots"])


@pytest.mark.parametrize(("manifest", "failed_gate"), [
    ("ledger-2.0.1.yml", "testinfra"),
    ("ledger-2.0.0.yml", "locust"),
])
def test_failed_gate_restores_every_byte(lab: RunningLab, train: dict[str, Any],
                                         manifest: str, failed_gate: str) -> None:
    before = fingerprints(lab)
    result = apply(lab, manifest)
    assert result.returncode == 3, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["state"] == "rolled_back"
    assert any(g["kind"] == failed_gate and g["verdict"] == "fail" for g in outcome["gates"])
    assert fingerprints(lab) == before
    restored = database_kept(lab, outcome["release"])
    assert restored and all(restored.values()), restored
    assert served_versions(lab) == {"1.1.0"}
    assert http("GET", f"{lab.url}/version") == (200, {"version": "1.1.0"})
    assert relctl_json(lab.state_dir, "show", outcome["release"])["bad"] is True


def screenshot(page: Path, png: Path) -> Image.Image:
    """``page`` as headless Chromium renders it."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (make test installs it)")
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                    f"--screenshot={png}", "--window-size=1200,1800", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    return Image.open(png).convert("RGB")


def pixels_of(image: Image.Image, colour: str) -> int:
    """How many pixels have ``colour`` (``#rrggbb``), give or take antialiasing."""
    want = tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return sum(count for count, rgb in image.getcolors(maxcolors=1 << 20) or []
               if all(abs(a - b) <= 8 for a, b in zip(rgb, want, strict=True)))


def test_report_of_the_slow_release_shows_its_charts(lab: RunningLab, train: dict[str, Any],
                                                      tmp_path: Path) -> None:
    page, junit = tmp_path / "report.html", tmp_path / "gates.xml"
    made = relctl(lab.state_dir, "report", "ledger-2.0.0", "--format", "html",
                  "-o", str(page), "--junit", str(junit))
    assert made.returncode == 0, made.stderr
    image = screenshot(page, tmp_path / "report.png")
    baseline, candidate = pixels_of(image, BASELINE_COLOUR), pixels_of(image, CANDIDATE_COLOUR)
    # The candidate's bars (p95 hundreds of ms) dwarf the baseline's (about ten ms; their
    # colour shows in the legend at least).
    assert candidate > 5000 and candidate > 10 * baseline > 0, (baseline, candidate)
    assert pixels_of(image, PHASE_COLOURS["rollback"]) > 200  # the timeline shows the rollback
    suites = ET.parse(junit).getroot()
    locust = [s for s in suites if s.get("name", "").startswith("locust:")]
    assert [s.get("failures") for s in locust] == ["1"]
    assert int(suites.find("testsuite").get("tests")) >= 1  # type: ignore[union-attr]
    markdown = relctl(lab.state_dir, "report", "ledger-2.0.0").stdout
    assert "| p95 |" in markdown and "ROLLED_BACK" in markdown


def test_data_written_before_survives_releases_and_rollbacks(
        lab: RunningLab, train: dict[str, Any]) -> None:
    # Each primary keeps its own database and HAProxy may route a read to another primary
    # than the write, so read every transaction back from the host that stored it.
    for written in train["written"]:
        tx = written["tx"]
        assert http("GET", f"http://{written['host']}:8080/tx/{tx['id']}") == (200, tx)


def test_second_apply_is_refused_while_locked(lab: RunningLab, train: dict[str, Any]) -> None:
    journal = Journal(lab.state_dir / "journal.sqlite")
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        holder = Holder("ops", os.uname().nodename, sleeper.pid,
                        psutil.Process(sleeper.pid).create_time())
        journal.acquire_lock("lab", "ledger-other", holder)
        before = fingerprints(lab)
        refused = apply(lab, "ledger-1.1.0.yml")
        assert refused.returncode == 5
        assert "ledger-other" in refused.stderr and f"pid {sleeper.pid}" in refused.stderr
        assert relctl(lab.state_dir, "unlock", "lab").returncode == 5  # holder alive
        assert fingerprints(lab) == before
    finally:
        sleeper.kill()
        sleeper.wait()
    unlocked = relctl(lab.state_dir, "unlock", "lab")
    assert unlocked.returncode == 0, unlocked.stderr
    assert journal.lock_status("lab") is None


BAD_MANIFESTS = {
    "unknown-key": ("strategy:\n  canary: 1\n", "strategy:\n  canary: 1\n  canry: 2\n",
                    "strategy.canry"),
    "wrong-type": ("  canary: 1\n", "  canary: many\n", "strategy.canary"),
    "missing-file": ("test_ledger_release.py", "test_nothing_here.py", "file not found"),
    "bad-yaml": ("targets: app_primary\n", "targets: [app_primary\n", "YAML syntax error"),
}


@pytest.mark.parametrize("case", sorted(BAD_MANIFESTS))
def test_invalid_manifest_exits_2_and_touches_nothing(
        lab: RunningLab, train: dict[str, Any], tmp_path: Path, case: str) -> None:
    old, new, expected = BAD_MANIFESTS[case]
    text = example_text(RELEASES / "ledger-1.1.0.yml")
    assert old in text
    manifest = tmp_path / f"{case}.yml"
    manifest.write_text(text.replace(old, new, 1))
    before = fingerprints(lab)
    result = relctl(lab.state_dir, "apply", str(manifest), "--yes")
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr
    assert f"{manifest}:" in result.stderr
    assert fingerprints(lab) == before


def _wait_for_host_state(journal_path: Path, state: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with Journal(journal_path) as journal:
            unfinished = journal.unfinished_releases()
            if unfinished and any(h.state == state
                                  for h in journal.host_states(unfinished[0].id)):
                return True
        time.sleep(0.2)
    return False


@pytest.mark.parametrize("kill_at", ["snapshotted", "applying"])
def test_resume_after_kill_leaves_one_verified_version(
        lab: RunningLab, train: dict[str, Any], kill_at: str, tmp_path: Path) -> None:
    before = served_versions(lab)
    assert len(before) == 1
    data = yaml.safe_load(example_text(RELEASES / "ledger-2.0.0.yml"))
    data["gates"]["locust"]["duration_s"] = 2  # the baseline window before the kill
    manifest = tmp_path / "ledger-2.0.0.yml"
    manifest.write_text(yaml.safe_dump(data, sort_keys=False))
    command = [*RELCTL, "--state-dir", str(lab.state_dir), "apply", str(manifest), "--yes",
               "--json", "--force"]  # 2.0.0 went bad earlier in the train: apply it again
    controller = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        assert _wait_for_host_state(lab.state_dir / "journal.sqlite", kill_at, 120)
        if kill_at == "applying":
            time.sleep(2)  # in the middle of the canary's playbook
    finally:
        # The controller's machine dies: the controller and every process it started.
        tree = [controller.pid, *(c.pid for c in psutil.Process(controller.pid)
                                  .children(recursive=True))]
        os.killpg(controller.pid, signal.SIGKILL)
        for pid in tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        controller.wait()
    resumed = relctl(lab.state_dir, "resume", "--json")
    assert resumed.returncode == 3, resumed.stderr
    assert served_versions(lab) == before
    assert http("GET", f"{lab.url}/version") == (200, {"version": next(iter(before))})
    with Journal(lab.state_dir / "journal.sqlite") as journal:
        assert journal.unfinished_releases() == []
        assert journal.lock_status("lab") is None


def test_rollback_of_a_committed_release_on_demand(lab: RunningLab, train: dict[str, Any]) -> None:
    result = relctl(lab.state_dir, "rollback", "ledger-1.1.0", "--json")
    assert result.returncode == 3, result.stderr
    assert served_versions(lab) == {"1.0.0"}
    shown = relctl_json(lab.state_dir, "show", "ledger-1.1.0")
    assert shown["bad"] is True and shown["state"] == "rolled_back"
    assert relctl_json(lab.state_dir, "status")["last_good"] == []


def test_rollback_past_a_point_of_no_return_is_refused(lab: RunningLab, train: dict[str, Any],
                                                       tmp_path: Path) -> None:
    # Without its load gate: this test is about the point of no return, and a p95 of
    # about 15 ms judged at 1.3x its baseline is at the mercy of a loaded machine.
    data = yaml.safe_load(example_text(RELEASES / "ledger-1.2.0.yml"))
    del data["gates"]["locust"]
    manifest = tmp_path / "no-load-gate-ledger-1.2.0.yml"
    manifest.write_text(yaml.safe_dump(data, sort_keys=False))
    released = apply(lab, str(manifest))
    assert released.returncode == 0, released.stderr
    before = fingerprints(lab)
    refused = relctl(lab.state_dir, "rollback", "ledger-1.2.0")  # reads the manifest again
    assert refused.returncode == 4
    assert "point of no return" in refused.stderr and "roll forward" in refused.stderr
    assert fingerprints(lab) == before and served_versions(lab) == {"1.2.0"}
    assert relctl_json(lab.state_dir, "show", "ledger-1.2.0")["state"] == "released"
