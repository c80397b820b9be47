"""Warranty monitoring on the real lab: a breach after release rolls the release back.

Its own lab (2 primary hosts, no backup site, at 127.0.9.130): ledger 1.0.0 deployed,
1.1.0 released, then ``relctl monitor`` runs in the background while the ledger service
is stopped on one host, as a crash during the warranty period would.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from controller.journal import Journal, MonitorRoundRecord
from tests.integration.ansible_cli import shell
from tests.integration.conftest import RunningLab, ledger_lab
from tests.integration.ledger_http import served_versions
from tests.integration.ledger_state import STOP_LEDGER
from tests.relctl_cli import RELCTL, example_text, relctl

pytestmark = pytest.mark.lab
RELEASES = Path(__file__).resolve().parents[2] / "examples" / "releases"


@pytest.fixture(scope="module")
def released_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    """A lab whose primary site was on 1.0.0 and now runs ledger-1.1.0, released. Its
    Locust gate keeps its absolute thresholds but not the comparison with the baseline,
    whose few-millisecond p95 ratio flaps on a loaded 2-core machine (this module proves
    the warranty monitor, not that gate)."""
    with ledger_lab(primary=2, backup=0, base_address="127.0.9.130") as lab:
        data = yaml.safe_load(example_text(RELEASES / "ledger-1.1.0.yml"))
        data["gates"]["locust"]["thresholds"]["p95_vs_baseline"] = None
        data["gates"]["locust"]["duration_s"] = 3  # the monitor's own probe is under test
        manifest = tmp_path_factory.mktemp("monitor") / "ledger-1.1.0.yml"
        manifest.write_text(yaml.safe_dump(data, sort_keys=False))
        applied = relctl(lab.state_dir, "apply", str(manifest), "--yes", "--json")
        assert applied.returncode == 0, applied.stdout + applied.stderr
        assert served_versions(lab) == {"1.1.0"}
        yield lab


def rounds_of(lab: RunningLab, release: str) -> list[MonitorRoundRecord]:
    with Journal(lab.state_dir / "journal.sqlite") as journal:
        record = journal.find_release(release)
        assert record is not None
        return journal.monitor_rounds(record.id)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(1)


def stop_process(process: subprocess.Popen[str]) -> None:
    """End the monitor if a failed assertion left it running (SIGTERM, then SIGKILL)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_a_breach_during_the_warranty_rolls_the_release_back(released_lab: RunningLab,
                                                              tmp_path: Path) -> None:
    lab = released_lab
    err = (tmp_path / "monitor.err").open("w")
    monitor = subprocess.Popen(
        [*RELCTL, "--state-dir", str(lab.state_dir), "monitor", "ledger-1.1.0", "--for", "2m",
         "--every", "5s", "--probe", "3s", "--json"],
        stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        wait_until(lambda: any(r.verdict == "pass" for r in rounds_of(lab, "ledger-1.1.0")),
                   timeout=90, what="a first passing round")
        victim = lab.hosts("app_primary")[0]["name"]
        shell(lab.ansible_cfg, victim, STOP_LEDGER)
        out, _ = monitor.communicate(timeout=240)
    finally:
        stop_process(monitor)
        err.close()
    log = (tmp_path / "monitor.err").read_text()
    assert monitor.returncode == 3, out + log
    outcome = json.loads(out)
    assert outcome["state"] == "rolled_back"
    assert outcome["rollback"]["state"] == "rolled_back"
    assert outcome["message"].startswith("rolled back: warranty breach: round ")
    verdicts = [r.verdict for r in rounds_of(lab, "ledger-1.1.0")]
    assert verdicts[0] == "pass" and verdicts[-1] == "fail", verdicts
    assert set(verdicts[:-1]) == {"pass"}, verdicts
    with Journal(lab.state_dir / "journal.sqlite") as journal:
        record = journal.find_release("ledger-1.1.0")
        assert record is not None
        assert (record.state, record.bad, record.exit_code) == ("rolled_back", True, 3)
        assert [m.state for m in journal.monitors(record.id)] == ["rolled_back"]
    assert served_versions(lab) == {"1.0.0"}
