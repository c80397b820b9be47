"""Plain deploys of the sample app to the lab (no snapshot, no gates)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from controller.adapters.ansible import PlaybookResult, TaskEvent, failure_summary, run_playbook
from controller.engine.lab import Lab, Progress
from controller.errors import InputError, PlaybookError
from controller.paths import project_root

LEDGER_BUILD = Path("examples") / "ledger" / "build.py"


def artifacts_dir() -> Path:
    """Where built release artifacts are kept."""
    return project_root() / "build" / "artifacts"


def ensure_artifact(version: str) -> Path:
    """The ledger tarball for ``version``, built from examples/ledger if missing."""
    tarball = artifacts_dir() / f"ledger-{version}.tar.gz"
    if tarball.exists():
        return tarball
    result = subprocess.run(
        [sys.executable, str(project_root() / LEDGER_BUILD), "--out", str(artifacts_dir()),
         "--version", version],
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0 or not tarball.exists():
        raise InputError(f"cannot build ledger {version}: {result.stderr.strip()[-400:]}",
                         hint=f"versions live in {project_root() / 'examples' / 'ledger'}")
    return tarball


def deploy_ledger(lab: Lab, version: str, limit: str, progress: Progress) -> PlaybookResult:
    """Run playbooks/ledger_deploy.yml for ``version`` on the hosts matching ``limit``."""
    lab.require()
    ensure_artifact(version)

    def on_event(event: TaskEvent) -> None:
        if event.outcome in ("failed", "unreachable"):
            progress(f"{event.host}: {event.task}: {event.outcome} {event.message}")

    progress(f"deploying ledger {version} to {limit}")
    run = lab.playbook_run(
        "ledger_deploy.yml", label=f"deploy-{version}", limit=limit,
        extravars={"ledger_version": version, "ledger_artifacts_dir": str(artifacts_dir())},
    )
    result = run_playbook(run, on_event)
    if not result.succeeded:
        raise PlaybookError(
            f"deploying ledger {version} failed on {', '.join(result.failed_hosts) or 'no host'}"
            f" ({result.status}): {failure_summary(result)}",
            hint=f"artifacts in {result.artifact_dir}")
    if not result.hosts:
        raise InputError(f"no host matches --limit {limit!r}")
    return result
