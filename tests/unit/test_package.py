"""What the package carries: its own playbooks, found in the package or an override, and
nothing of the sample service."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

import controller
from controller.errors import ExitCode, PrerequisiteError
from controller.paths import PLAYBOOKS_ENV, bundled_playbook, playbooks_dir

PACKAGE = Path(controller.__file__).parent
ROOT = PACKAGE.parent


def test_nothing_in_the_package_knows_the_sample_service() -> None:
    mentions = [str(path.relative_to(ROOT)) for path in PACKAGE.rglob("*")
                if path.is_file() and "__pycache__" not in path.parts
                and b"ledger" in path.read_bytes().lower()]
    assert mentions == []


def test_every_playbook_relctl_names_ships_in_the_package(monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    monkeypatch.delenv(PLAYBOOKS_ENV, raising=False)
    source = "\n".join(p.read_text() for p in PACKAGE.rglob("*.py"))
    named = set(re.findall(r'"((?:relctl|lb)_[a-z_]+\.yml)"', source))
    assert {"lb_setup.yml", "relctl_litestream.yml", "relctl_agent.yml"} <= named
    for name in named:
        assert bundled_playbook(name).parent == PACKAGE / "playbooks"


def test_a_missing_playbook_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(PLAYBOOKS_ENV, str(tmp_path))
    assert playbooks_dir() == tmp_path
    with pytest.raises(PrerequisiteError, match=r"relctl_agent\.yml is missing") as caught:
        bundled_playbook("relctl_agent.yml")
    assert caught.value.exit_code == ExitCode.PREREQUISITE
    assert PLAYBOOKS_ENV in caught.value.message


def test_the_version_is_written_once() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"]
