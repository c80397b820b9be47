"""What the continuity tests do to a lab running ledger: write and read transactions
through the LB, lose the primary site and bring it back."""

from __future__ import annotations

from typing import Any

import psutil

from controller.adapters import http
from tests.integration.conftest import RunningLab
from tests.relctl_cli import relctl, relctl_json


def write(lab: RunningLab, account: str, amount: int) -> dict[str, Any]:
    answer = http.request("POST", f"{lab.url}/tx", {"account": account, "amount_cents": amount})
    assert answer.status == 201, answer
    tx: dict[str, Any] = answer.json()
    return tx


def read(lab: RunningLab, tx_id: int) -> tuple[int, Any, str]:
    answer = http.request("GET", f"{lab.url}/tx/{tx_id}")
    return answer.status, answer.json(), answer.served_by


def served_by(lab: RunningLab) -> str:
    return http.request("GET", f"{lab.url}/health").served_by


def kill_primary_site(lab: RunningLab) -> None:
    """Lose the primary site: kill each primary host's PID 1 (its sshd), by recorded pid."""
    status = relctl_json(lab.state_dir, "lab", "status")
    for host in status["hosts"]:
        if host["group"] == "app_primary":
            psutil.Process(host["pid"]).kill()


def bring_primary_site_back(lab: RunningLab) -> None:
    up = relctl(lab.state_dir, "lab", "up")
    assert up.returncode == 0, up.stderr
