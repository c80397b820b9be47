"""What the continuity tests do to a lab running ledger: write and read transactions
through the LB, lose the primary site and bring it back."""

from __future__ import annotations

import threading
import time
from datetime import datetime
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


class Teller:
    """A teller recording payments through the LB every 100 ms, in a thread, while a drill
    runs (``with Teller(url, account) as teller: ...``); ``acked``: (epoch seconds of the
    answer, transaction) of every payment the service acknowledged."""

    def __init__(self, url: str, account: str) -> None:
        self.url, self.account = url, account
        self.acked: list[tuple[float, dict[str, Any]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pay, daemon=True)

    def __enter__(self) -> Teller:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _pay(self) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            answer = http.request("POST", f"{self.url}/tx",
                                  {"account": self.account, "amount_cents": n}, timeout=2)
            if answer.status == 201:
                self.acked.append((time.time(), answer.json()))
            time.sleep(0.1)

    def acked_between(self, start: float, end: float) -> list[dict[str, Any]]:
        return [tx for at, tx in self.acked if start <= at <= end]


def fault_at(drill: dict[str, Any]) -> float:
    """When a drill injected its fault (epoch seconds), from its report's figures."""
    return float(datetime.fromisoformat(drill["started"]).timestamp()
                 + drill["moments"]["fault_s"])
