"""Shared plumbing for the benchmarks: a private lab per benchmark, the CLI, a timer."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from controller.paths import tools_path

ROOT = Path(__file__).resolve().parent.parent
RELCTL = [sys.executable, "-m", "controller"]
# The sample service as the lab's load balancer fronts it.
LEDGER = ["--service", "ledger:8080/health"]


def relctl(state_dir: Path, *args: str) -> dict[str, Any]:
    """Run a ``relctl --json`` command that must succeed; return its document."""
    result = subprocess.run([*RELCTL, "--state-dir", str(state_dir), *args, "--json"],
                            capture_output=True, text=True, check=False, cwd=ROOT)
    if result.returncode != 0:
        raise SystemExit(f"relctl {' '.join(args)} failed:\n{result.stderr}")
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def timed(func: Any, *args: Any) -> tuple[float, Any]:
    """Seconds ``func(*args)`` took, and what it returned."""
    start = time.perf_counter()
    value = func(*args)
    return time.perf_counter() - start, value


def fresh_state_dir(name: str) -> Path:
    """An empty state directory for one benchmark lab (never under /tmp)."""
    path = Path("/var/tmp/relctl-bench") / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def ensure_artifacts(*versions: str) -> Path:
    """build/artifacts with the ledger tarballs of ``versions``, the missing ones built
    (as ``make artifacts`` and examples/ledger/deploy.sh do): a bench runs on a fresh
    checkout."""
    folder = ROOT / "build" / "artifacts"
    for version in versions:
        if not (folder / f"ledger-{version}.tar.gz").exists():
            subprocess.run([sys.executable, str(ROOT / "examples" / "ledger" / "build.py"),
                            "--out", str(folder), "--version", version],
                           check=True, capture_output=True)
    return folder


def deploy_ledger(state_dir: Path, version: str, limit: str = "app_primary") -> None:
    """Deploy the sample service with its plain playbook (examples/ledger/deploy.sh)."""
    result = subprocess.run(
        [str(ROOT / "examples" / "ledger" / "deploy.sh"), "--state-dir", str(state_dir),
         "--limit", limit, version], capture_output=True, text=True,
        env={**os.environ, "PATH": tools_path()}, check=False)
    if result.returncode != 0:
        raise SystemExit(f"deploy of ledger {version} failed:\n{result.stdout[-2000:]}")
