"""A release marked bad is refused unless forced; a sign-off approves one manifest text in
one environment; journals of schema 3 migrate with their rows still readable."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from controller.engine.admission import refuse_bad_release, why_bad
from controller.engine.signoff import manifest_ref, read_status, require_signoffs
from controller.errors import InputError, SignoffMissingError
from controller.journal import Journal, ManifestRef
from controller.journal.db import MIGRATIONS, SCHEMA_VERSION
from controller.manifest_loader import load_manifest
from tests.unit.example_tree import example_tree, manifest_with
from tests.unit.hostile import assert_refused, run_cli

REQUIRED = "signoff:\n  required: [uat]\n"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return example_tree(tmp_path / "tree")


def bad_release(journal: Journal, name: str = "ledger-1.1.0") -> int:
    release_id = journal.start_release(name=name, version="1.1.0", service="ledger",
                                       environment="lab", manifest_path=Path("m.yml"),
                                       manifest_sha256="0" * 64)
    journal.set_release_state(release_id, "rolled_back", exit_code=3, message="rolled back")
    journal.mark_bad(release_id, "testinfra fail on canary")
    return release_id


def test_apply_refuses_a_bad_release_saying_when_and_why(tree: Path, tmp_path: Path) -> None:
    path = tree / "examples" / "releases" / "ledger-1.1.0.yml"
    with Journal(tmp_path / "state" / "journal.sqlite") as journal:
        release_id = bad_release(journal)
        record = journal.release(release_id)
        assert record.bad_since is not None and record.bad_reason == "testinfra fail on canary"
        with pytest.raises(InputError) as caught:
            refuse_bad_release(journal, load_manifest(path))
    assert caught.value.exit_code == 2
    assert "marked bad" in caught.value.message and "testinfra fail on canary" in \
        caught.value.message and f"#{release_id}" in caught.value.message
    assert "--force" in (caught.value.hint or "")
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  hosts:\n    h1: {ansible_host: 127.0.0.250}\n")
    ran = run_cli(tmp_path / "state", "apply", str(path), "--inventory", str(inventory),
                  "--yes")
    assert_refused(ran)
    assert "testinfra fail on canary" in ran.stderr


def test_force_applies_it_anyway_and_says_so(tree: Path, tmp_path: Path) -> None:
    said: list[str] = []
    with Journal(tmp_path / "j.sqlite") as journal:
        bad_release(journal)
        manifest = load_manifest(tree / "examples" / "releases" / "ledger-1.1.0.yml")
        refuse_bad_release(journal, manifest, force=True, progress=said.append)
        events = [e.message for e in journal.events()]
    assert said and "marked bad" in said[0]
    assert any(e.startswith("apply --force of ledger-1.1.0") for e in events)


def test_another_release_is_not_refused(tree: Path, tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite") as journal:
        bad_release(journal, "ledger-2.0.0")
        refuse_bad_release(journal, load_manifest(tree / "examples" / "releases" /
                                                  "ledger-1.1.0.yml"))


def test_a_signoff_is_bound_to_the_manifest_text_and_environment(tree: Path,
                                                                  tmp_path: Path) -> None:
    path = manifest_with(tree, "signed", REQUIRED)
    signed = load_manifest(path)
    with Journal(tmp_path / "j.sqlite") as journal:
        journal.add_signoff("ledger-1.1.0", "uat", "Uma", signed=manifest_ref(signed))
        assert require_signoffs(journal, signed, print) is not None
        path.write_text(path.read_text().replace("Ada Ops", "Eve Ops"))  # edited after
        with pytest.raises(SignoffMissingError) as caught:
            require_signoffs(journal, load_manifest(path), print)
        elsewhere = ManifestRef("production", path, manifest_ref(signed).sha256)
        status = read_status(journal, "ledger-1.1.0", ["uat"], elsewhere)
    assert "uat signed manifest sha256" in caught.value.message
    assert status.missing == ["uat"] and len(status.stale) == 1


def test_signoff_without_manifest_signs_what_apply_waits_for(tree: Path,
                                                             tmp_path: Path) -> None:
    path = manifest_with(tree, "signed", REQUIRED)
    state = tmp_path / "state"
    ran = run_cli(state, "signoff", "ledger-1.1.0", "--role", "uat", "--by", "Uma")
    assert_refused(ran)  # nothing asked for yet: which manifest?
    with Journal(state / "journal.sqlite") as journal, pytest.raises(SignoffMissingError):
        require_signoffs(journal, load_manifest(path), print)
    ran = run_cli(state, "signoff", "ledger-1.1.0", "--role", "uat", "--by", "Uma [/x]")
    assert ran.code == 0, ran
    with Journal(state / "journal.sqlite") as journal:
        assert require_signoffs(journal, load_manifest(path), print) is not None


def test_a_schema_3_journal_migrates_and_keeps_its_rows_readable(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:
        for statement in (s for version in MIGRATIONS[:3] for s in version):
            db.execute(statement)
        db.execute("PRAGMA user_version = 3")
        db.execute("INSERT INTO releases (name, version, service, environment, manifest_path,"
                   " manifest_sha256, state, bad, started, ended, operator_user,"
                   " operator_host, operator_pid, operator_started, message) VALUES"
                   " ('r-1', '1', 's', 'lab', 'm.yml', 'x', 'rolled_back', 1,"
                   " '2026-01-01T00:00:00+00:00', '2026-01-01T00:05:00+00:00', 'u', 'h', 1,"
                   " 0, 'rolled back: gate failed')")
        db.execute("INSERT INTO signoffs (release, role, signed_by, time) VALUES"
                   " ('r-1', 'uat', 'Uma', '2026-01-01T00:00:00+00:00')")
    with Journal(path) as journal:
        record = journal.bad_release("r-1")
        old = journal.signoffs("r-1")
        status = read_status(journal, "r-1", ["uat"], ManifestRef("lab", Path("m"), "x"))
        version = journal.schema_version()
    assert version == SCHEMA_VERSION
    assert record is not None and record.bad_since is None and record.bad_reason is None
    assert why_bad(record).endswith("(release #1 in lab): rolled back: gate failed")
    assert [(s.role, s.by, s.signed) for s in old] == [("uat", "Uma", None)]
    assert status.missing == ["uat"]  # an unbound sign-off approves nothing
