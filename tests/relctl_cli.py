"""Run the real ``relctl`` command in a subprocess, as an operator or a pipeline would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

RELCTL = [sys.executable, "-m", "controller"]


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
