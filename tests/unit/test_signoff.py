"""Sign-offs: the missing-roles logic, ``relctl signoff``, and the gate in ``apply``.

``apply`` runs against an inventory whose hosts sit on 127.0.0.250, where nobody listens:
the gate must refuse before anything is locked, journaled or contacted.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from controller.engine.signoff import manifest_ref, require_signoffs
from controller.errors import ExitCode, SignoffMissingError
from controller.journal import Journal
from controller.models.manifest import Manifest
from controller.planning.signoff import Approval, missing_roles, refusal, signoff_status
from tests.relctl_cli import relctl
from tests.unit.example_tree import example_tree, manifest_with

REQUIRED = "signoff:\n  required: [uat, change-board]\n"
INVENTORY = """\
all:
  children:
    app_primary:
      hosts:
        primary-1: {ansible_host: 127.0.0.250}
        primary-2: {ansible_host: 127.0.0.250}
"""


def manifest(signoff: dict[str, object] | None) -> Manifest:
    return Manifest.model_validate({
        "release": "ledger-1.1.0", "version": "1.1.0", "service": "ledger",
        "environment": "production", "targets": "app_primary",
        "items": [{"kind": "file", "name": "conf", "path": "/etc/ledger/ledger.conf"}],
        "playbooks": {"apply": ["deploy.yml"]}, "owners": {"release_manager": "Ada Ops"},
        "signoff": signoff,
    })


class FakeClock:
    """A monotonic clock that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


# --- pure ---------------------------------------------------------------------------------


def test_missing_roles_in_required_order_once_each() -> None:
    assert missing_roles(["uat", "change-board", "uat"], ["ops"]) == ["uat", "change-board"]
    assert missing_roles(["uat", "change-board"], ["change-board", "ops"]) == ["uat"]
    assert missing_roles(["uat"], ["uat", "uat"]) == []
    assert missing_roles([], ["uat"]) == []


def test_status_and_refusal_name_what_is_missing_and_how_to_sign() -> None:
    signed = [Approval("uat", "Uma", datetime(2026, 11, 30, tzinfo=UTC))]
    status = signoff_status("ledger-1.1.0", ["uat", "change-board"], signed)
    assert not status.complete and status.missing == ["change-board"]
    message, hint = refusal("ledger-1.1.0", "production", ["uat", "change-board"], 90)
    assert message == ("ledger-1.1.0 may not be applied to production: no sign-off by uat, "
                       "change-board of this manifest (waited 1m30s for approval: "
                       "counts as denied)")
    assert "relctl signoff ledger-1.1.0 --role uat --by NAME" in hint
    assert "relctl signoff ledger-1.1.0 --role change-board --by NAME" in hint


def test_roles_are_slugs_in_the_manifest() -> None:
    with pytest.raises(ValueError, match="String should match pattern"):
        manifest({"required": ["Change Board"]})
    assert manifest({"required": ["uat", "uat"], "wait": "30m"}).signoff == \
        manifest({"required": ["uat"], "wait": 1800}).signoff


# --- the gate, with a fake clock ----------------------------------------------------------


def test_no_policy_needs_no_signoff(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite") as journal:
        assert require_signoffs(journal, manifest(None), print) is None


def test_the_gate_waits_for_a_late_signoff(tmp_path: Path) -> None:
    clock, progress = FakeClock(), []
    m = manifest({"required": ["uat", "change-board"], "wait": "10m"})
    with Journal(tmp_path / "j.sqlite") as journal:
        journal.add_signoff("ledger-1.1.0", "uat", "Uma", signed=manifest_ref(m))

        def sleep(seconds: float) -> None:
            clock.sleep(seconds)
            if clock.now >= 60:  # the change board signs a minute into the wait
                journal.add_signoff("ledger-1.1.0", "change-board", "Chris",
                                    signed=manifest_ref(m))

        status = require_signoffs(journal, m, progress.append, sleep=sleep, clock=clock)
    assert status is not None and status.complete
    assert 60 <= clock.now < 100
    assert progress == ["waiting up to 10m for sign-off by change-board",
                        "signed off as change-board by Chris"]


def test_a_wait_that_runs_out_counts_as_denied(tmp_path: Path) -> None:
    clock = FakeClock()
    with Journal(tmp_path / "j.sqlite") as journal:
        m = manifest({"required": ["uat", "change-board"], "wait": "30s"})
        with pytest.raises(SignoffMissingError) as caught:
            require_signoffs(journal, m, lambda _m: None, sleep=clock.sleep, clock=clock)
        events = [e.message for e in journal.events()]
        assert journal.history() == [] and journal.locks() == []
    assert caught.value.exit_code == ExitCode.SIGNOFF_MISSING == 11
    assert caught.value.missing == ["uat", "change-board"]
    assert "(waited 30s for approval: counts as denied)" in caught.value.message
    assert clock.now == pytest.approx(30)
    assert events == [f"apply refused: {caught.value.message}"]


def test_the_caller_s_wait_overrides_the_manifest_s(tmp_path: Path) -> None:
    clock = FakeClock()
    with Journal(tmp_path / "j.sqlite") as journal, pytest.raises(SignoffMissingError):
        require_signoffs(journal, manifest({"required": ["uat"], "wait": "4h"}),
                         lambda _m: None, wait_s=0, sleep=clock.sleep, clock=clock)
    assert clock.sleeps == []


# --- the CLI ------------------------------------------------------------------------------


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


def cli(state: Path, *args: str) -> tuple[int, str, str]:
    result = relctl(state, *args, env={"RELCTL_JOURNAL": str(state / "journal.sqlite")},
                    timeout=120)
    return result.returncode, result.stdout, result.stderr


def test_signoff_records_and_lists(state: Path, tmp_path: Path) -> None:
    path = manifest_with(example_tree(tmp_path / "tree"), "needs", REQUIRED)
    code, out, err = cli(state, "signoff", "ledger-1.1.0", "--role", "uat", "--by", "Uma Tester",
                         "--note", "UAT-42 passed", "--manifest", str(path), "--json")
    assert code == 0, err
    recorded = json.loads(out)
    assert (recorded["role"], recorded["by"], recorded["note"]) == ("uat", "Uma Tester",
                                                                   "UAT-42 passed")
    assert abs(datetime.fromisoformat(recorded["time"]) - datetime.now(UTC)).total_seconds() < 60
    assert recorded["environment"] == "lab" and len(recorded["manifest_sha256"]) == 64
    assert cli(state, "signoff", "ledger-1.1.0", "--role", "change-board", "--by", "Chris",
               "--manifest", str(path))[0] == 0
    code, out, err = cli(state, "signoff", "ledger-1.1.0", "--list", "--json")
    assert code == 0, err
    listed = json.loads(out)
    assert [(s["role"], s["by"]) for s in listed["signoffs"]] == [("uat", "Uma Tester"),
                                                                  ("change-board", "Chris")]
    code, out, _ = cli(state, "signoff", "ledger-1.1.0", "--list")
    assert "Uma Tester" in out and "UAT-42 passed" in out and "change-board" in out


def test_signoff_list_against_a_manifest_shows_what_is_missing(state: Path,
                                                               tmp_path: Path) -> None:
    path = manifest_with(example_tree(tmp_path / "tree"), "needs", REQUIRED)
    cli(state, "signoff", "ledger-1.1.0", "--role", "change-board", "--by", "Chris",
        "--manifest", str(path))
    code, out, err = cli(state, "signoff", "ledger-1.1.0", "--list", "--manifest", str(path),
                         "--json")
    assert code == 0, err
    assert json.loads(out)["missing"] == ["uat"]


@pytest.mark.parametrize("args", [["--role", "Change Board", "--by", "Chris"],
                                  ["--role", "uat"], ["--by", "Chris"]])
def test_signoff_refuses_bad_input(state: Path, args: list[str]) -> None:
    code, _, err = cli(state, "signoff", "ledger-1.1.0", *args)
    assert code == ExitCode.INVALID_INPUT, err


# --- apply refuses without sign-offs ------------------------------------------------------


@pytest.fixture
def gated(tmp_path: Path) -> tuple[Path, Path]:
    """A manifest that requires uat and change-board, and an inventory nobody answers."""
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(INVENTORY)
    return manifest_with(example_tree(tmp_path / "tree"), "gated", REQUIRED), inventory


def assert_nothing_touched(state: Path) -> None:
    with Journal(state / "journal.sqlite") as journal:
        assert journal.history() == []
        assert journal.locks() == []
        assert journal.unfinished_releases() == []
        assert any(e.message.startswith("apply refused:") for e in journal.events())


def test_apply_without_signoffs_exits_11_naming_both_roles(state: Path,
                                                            gated: tuple[Path, Path]) -> None:
    path, inventory = gated
    code, _, err = cli(state, "apply", str(path), "--inventory", str(inventory), "--yes")
    assert code == ExitCode.SIGNOFF_MISSING == 11, err
    assert "no sign-off by uat, change-board" in err
    assert "relctl signoff ledger-1.1.0 --role change-board --by NAME" in err
    assert_nothing_touched(state)


def test_apply_names_only_the_roles_still_missing(state: Path,
                                                  gated: tuple[Path, Path]) -> None:
    path, inventory = gated
    cli(state, "signoff", "ledger-1.1.0", "--role", "uat", "--by", "Uma", "--manifest", str(path))
    code, out, err = cli(state, "apply", str(path), "--inventory", str(inventory), "--json")
    assert code == 11, err
    document = json.loads(out)
    assert document["exit_code"] == 11 and document["error"] == "SignoffMissingError"
    assert document["message"].endswith("no sign-off by change-board of this manifest")
    assert_nothing_touched(state)


def test_apply_waits_for_approval_then_refuses(state: Path, gated: tuple[Path, Path]) -> None:
    path, inventory = gated
    started = time.monotonic()
    code, _, err = cli(state, "apply", str(path), "--inventory", str(inventory), "--yes",
                       "--wait-approval", "1s")
    assert time.monotonic() - started >= 1.0
    assert code == 11, err
    assert "waiting up to 1s for sign-off by uat, change-board" in err
    assert "(waited 1s for approval: counts as denied)" in err
    assert_nothing_touched(state)
