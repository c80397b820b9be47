"""Run the real ``relctl`` command in a subprocess, as an operator or a pipeline would."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from controller.adapters.ansible import strategy_environment
from controller.errors import PrerequisiteError
from controller.paths import tools_path

RELCTL = [sys.executable, "-m", "controller"]
ROOT = Path(__file__).resolve().parent.parent
# The sample service as the lab fronts it (its port and health path).
LEDGER_SERVICE = "ledger:8080/health"


def example_text(example: Path) -> str:
    """An example's text with its relative paths (``../../playbooks/...``, relative to
    its own folder) made absolute: a copy of it works from any folder, so tests write
    their variants to a temporary folder, never beside the example in the source tree."""
    return re.sub(r"(?<![\w./])((?:\.\./)+)",
                  lambda up: f"{(example.parent / up.group(1)).resolve()}/",
                  example.read_text())


def relctl(state_dir: Path, *args: str, env: dict[str, str] | None = None,
           timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run ``relctl --state-dir STATE_DIR ARGS...`` and capture its output."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [*RELCTL, "--state-dir", str(state_dir), *args],
        capture_output=True, text=True, timeout=timeout, env=full_env, check=False,
    )


def relctl_json(state_dir: Path, *args: str) -> dict[str, Any]:
    """Run a ``--json`` command that must succeed; return its document."""
    result = relctl(state_dir, *args, "--json")
    assert result.returncode == 0, f"relctl {' '.join(args)} failed:\n{result.stderr}"
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def deploy_ledger(state_dir: Path, version: str, limit: str = "app_primary",
                  extra: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
    """Deploy the sample service with its plain playbook (examples/ledger/deploy.sh);
    ``extra``: more of its options (``-e VAR=VALUE``). A test's set-up, not what it proves:
    it runs with Mitogen's strategy where Mitogen is installed (the dev extra): 4.8 s
    instead of 7.6 s on two lab hosts (``bench/mitogen.py`` measures 10). Every
    ``relctl apply`` of the tests keeps relctl's default strategy, but test_mitogen's."""
    return subprocess.run(
        [str(ROOT / "examples" / "ledger" / "deploy.sh"), "--state-dir", str(state_dir),
         "--limit", limit, *extra, version],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "PATH": tools_path(), **_mitogen_env()}, check=False,
    )


def _mitogen_env() -> dict[str, str]:
    """ansible-playbook's settings for Mitogen's linear strategy, or none without it."""
    try:
        return strategy_environment("mitogen")
    except PrerequisiteError:
        return {}
