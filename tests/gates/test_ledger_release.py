"""Acceptance checks of a ledger release, run by relctl's testinfra gate on each host.

relctl runs this file with pytest-testinfra against the hosts of each batch
(``--hosts=ansible://HOST``) and again after a rollback. ``EXPECTED_VERSION`` comes from
the manifest's gate ``env``. The checks only read: they never write to the ledger.
"""

from __future__ import annotations

import json
import os
from typing import Any

EXPECTED = os.environ.get("EXPECTED_VERSION", "")
ROOT = os.environ.get("LEDGER_ROOT", "/srv/ledger")
PORT = int(os.environ.get("LEDGER_PORT", "8080"))

FETCH = (
    "import json,sys,urllib.request,urllib.error\n"
    "try:\n"
    " r=urllib.request.urlopen(sys.argv[1],timeout=5)\n"
    " print(json.dumps([r.status,r.read().decode()]))\n"
    "except urllib.error.HTTPError as e:\n"
    " print(json.dumps([e.code,e.read().decode()]))\n"
)


def get(host: Any, path: str) -> tuple[int, str]:
    """GET ``path`` from the ledger on ``host``'s own address, run on the host itself."""
    address = host.ansible.get_variables().get("ansible_host", "127.0.0.1")
    result = host.run("python3 -c %s %s", FETCH, f"http://{address}:{PORT}{path}")
    assert result.rc == 0, result.stderr
    status, body = json.loads(result.stdout)
    return int(status), str(body)


def test_current_release_is_the_expected_version(host: Any) -> None:
    current = host.file(f"{ROOT}/current")
    assert current.is_symlink
    assert current.linked_to == f"{ROOT}/releases/{EXPECTED}"


def test_service_is_running_and_healthy(host: Any) -> None:
    assert host.run(f"{ROOT}/current/bin/ledgerctl status").rc == 0
    status, _ = get(host, "/health")
    assert status == 200


def test_version_endpoint_reports_the_release(host: Any) -> None:
    status, body = get(host, "/version")
    assert status == 200
    assert json.loads(body)["version"] == EXPECTED


def test_transactions_can_be_read(host: Any) -> None:
    status, _ = get(host, "/tx/1")
    assert status in (200, 404), f"GET /tx/1 answered {status}"
