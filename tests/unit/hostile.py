"""Helpers of the hostile-input tests: a tree where the examples load, an in-process CLI,
and the check that a refusal is located (``file:line: field: message``)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from controller.cli import plan as plan_command
from controller.cli.main import cli
from controller.engine import environment
from tests.unit.example_tree import ROOT, example_tree

CONTINUITY = ROOT / "examples" / "continuity"
INVENTORY = "all:\n  children:\n    app_primary:\n      hosts:\n        primary-1:\n"


def hostile_tree(root: Path) -> Path:
    """The example tree, with the continuity plan and the files it references."""
    example_tree(root)
    shutil.copytree(CONTINUITY, root / "examples" / "continuity")
    (root / "loadtests" / "ledger_drill.py").write_text("# dummy\n")
    (root / "hosts.yml").write_text(INVENTORY)
    return root


def assert_located(message: str, path: Path) -> None:
    """Every problem in ``message`` names ``path`` and a line."""
    lines = message.splitlines()
    if len(lines) > 1:  # "FILE: N problems", then one line per problem
        assert re.fullmatch(rf"{re.escape(str(path))}: \d+ problems", lines[0]), message
        lines = [line for line in lines[1:] if not line.startswith("... and ")]
    for line in lines:
        assert re.match(rf"{re.escape(str(path))}:\d+: ", line), message


@dataclass
class Ran:
    """One in-process ``relctl`` run."""

    code: int
    stdout: str
    stderr: str


def run_cli(state: Path, *args: str) -> Ran:
    """``relctl --state-dir STATE ARGS`` in this process; any exception but SystemExit fails."""
    result = CliRunner().invoke(cli, ["--state-dir", str(state), *args], catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"relctl {args} raised {result.exception!r}") from result.exception
    assert "Traceback" not in result.stderr
    return Ran(result.exit_code, result.stdout, result.stderr)


def assert_refused(ran: Ran) -> None:
    """Exit 2 with an ``error:`` line first."""
    assert ran.code == 2, ran
    assert ran.stderr.startswith("error: "), ran


@contextmanager
def fake_hosts(monkeypatch: pytest.MonkeyPatch, hosts: list[str]) -> Iterator[None]:
    """Inventory lookups answer ``hosts`` without running ``ansible``."""
    def listed(_inventory: Path, _cfg: Path, pattern: str) -> list[str]:
        return [] if "backup" in pattern else hosts

    monkeypatch.setattr(environment, "list_hosts", listed)
    monkeypatch.setattr(plan_command, "list_hosts", listed)
    yield
