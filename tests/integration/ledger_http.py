"""Asking the lab's ledger hosts over HTTP, as a user or a monitoring probe would."""

from __future__ import annotations

from controller.adapters import http
from tests.integration.conftest import RunningLab


def served_versions(lab: RunningLab) -> set[str]:
    """The version each primary host serves on its own address (or what went wrong)."""
    versions = set()
    for host in lab.hosts("app_primary"):
        answer = http.request("GET", f"http://{host['address']}:8080/version", timeout=10)
        body = answer.json() if answer.status == 200 else None
        versions.add(str(body["version"]) if isinstance(body, dict) else
                     f"{host['name']}: HTTP {answer.status} {answer.error}".strip())
    return versions
