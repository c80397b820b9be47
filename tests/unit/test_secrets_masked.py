"""Secrets stay out of messages: a journal URL's password, even when libpq or urllib
cannot parse the URL; a webhook's secret path quoted in an HTTP error; a password given
to ``init --postgresql``. Nothing here leaves the loopback interface."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from controller.journal import Journal, mask_secrets, mask_url
from controller.models.notify import NotifyConfig
from controller.notify import Notifier, notify_event
from tests.relctl_cli import relctl
from tests.unit.hostile import run_cli

PASSWORD = "s3cr3t-Pw"
# Journal URLs that name a password and that libpq or urllib refuse (or cannot reach):
# each must be refused (exit 2) or unreachable (exit 7) without the password shown.
JOURNAL_URLS = [
    f"postgresql://relctl:{PASSWORD}%zz@127.0.0.1:1/relctl",  # invalid percent-encoded token
    f"postgresql://relctl:{PASSWORD}%@127.0.0.1:1/relctl",
    f"postgresql://relctl:{PASSWORD}@[::1:1/relctl",  # an IPv6 address without its "]"
    f"postgresql://relctl:{PASSWORD}@[fe80::1%zz]:1/relctl",
    f"postgresql://relctl:{PASSWORD}@127.0.0.1:1:2/relctl",
    f"postgresql://127.0.0.1:1/relctl?password={PASSWORD}&sslmode=bogus",
    f"postgresql://127.0.0.1:1/relctl?password={PASSWORD}%zz",
    f"postgresql://relctl:{PASSWORD}'x@127.0.0.1:1/relctl",
    f"postgres://relctl:{PASSWORD}@127.0.0.1:99999/relctl",
    f"mysql://relctl:{PASSWORD}@127.0.0.1/relctl",
]


def shown(ran: Any) -> str:
    return f"{ran.stdout}\n{ran.stderr}"


@pytest.mark.parametrize("url", JOURNAL_URLS)
def test_a_journal_url_is_never_echoed_with_its_password(tmp_path: Path, url: str) -> None:
    ran = run_cli(tmp_path / "state", "--journal", url, "history")
    assert ran.code in (2, 7), ran
    assert ran.stderr.startswith("error: "), ran
    assert PASSWORD not in shown(ran)


@pytest.mark.parametrize("url", JOURNAL_URLS[:3])
def test_the_json_error_holds_no_password_either(tmp_path: Path, url: str) -> None:
    ran = relctl(tmp_path / "state", "--journal", url, "history", "--json", timeout=60)
    assert ran.returncode in (2, 7), ran
    assert json.loads(ran.stdout)["ok"] is False
    assert PASSWORD not in ran.stdout + ran.stderr


@pytest.mark.parametrize("url", JOURNAL_URLS)
def test_journal_migrate_to_never_echoes_the_password(tmp_path: Path, url: str) -> None:
    Journal(tmp_path / "old.sqlite").close()
    ran = run_cli(tmp_path / "state", "journal", "migrate", "--from",
                  str(tmp_path / "old.sqlite"), "--to", url)
    assert ran.code in (2, 7), ran
    assert PASSWORD not in shown(ran)


@pytest.mark.parametrize(("url", "kept"), [
    (f"postgresql://relctl:{PASSWORD}@[::1:1/relctl", "postgresql://relctl:***@[::1:1/relctl"),
    (f"postgresql://relctl:{PASSWORD}@db/relctl", "postgresql://relctl:***@db/relctl"),
    (f"postgresql://db/relctl?password={PASSWORD}", "postgresql://db/relctl?password=***"),
])
def test_a_url_is_masked_whether_it_parses_or_not(url: str, kept: str) -> None:
    assert mask_url(url) == kept


@pytest.mark.parametrize("text", [
    f'invalid URI: "postgresql://u:{PASSWORD}@[::1:1/db"',
    f"host=db password='{PASSWORD} x' user=relctl",
    f"host=db password={PASSWORD}",
    f"postgresql://relctl:a/{PASSWORD}@127.0.0.1:1/relctl",
    f"at https://hook:{PASSWORD}@example.com/x and http://a:{PASSWORD}@b/",
])
def test_free_text_loses_every_url_password(text: str) -> None:
    assert PASSWORD not in mask_secrets(text)
    assert "***" in mask_secrets(text)


def test_a_plain_user_name_is_kept() -> None:
    assert mask_secrets("postgresql://USER@HOST/DB") == "postgresql://USER@HOST/DB"


# --- a webhook whose server quotes the secret path -------------------------------------


TOKEN = "T0KEN-quoted-9f8e7d-secret"


class _Quoting(BaseHTTPRequestHandler):
    """Answers 404 with the request's path in the reason, as some proxies do."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(404, f"no such hook: {self.path} (token {self.path.split('/')[-1]})")
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def quoting_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Quoting)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_a_webhook_error_quoting_its_path_is_neither_shown_nor_journaled(
        quoting_server: str, tmp_path: Path) -> None:
    url = f"{quoting_server}/services/{TOKEN}"
    config = NotifyConfig.model_validate({"channels": [{"kind": "webhook", "url": url}]})
    with Journal(tmp_path / "journal.sqlite") as journal:
        [delivery] = notify_event(config, "start", {"release": "r1"}, journal)
        events = [e.message for e in journal.events()]
    assert not delivery.ok
    assert delivery.error.startswith("HTTP 404"), delivery.error
    for text in (delivery.error, delivery.summary(), *events):
        assert TOKEN not in text
        assert "/services/" not in text


def test_a_webhook_error_is_bounded(quoting_server: str) -> None:
    url = f"{quoting_server}/services/{'x' * 2000}"
    config = NotifyConfig.model_validate({"channels": [{"kind": "webhook", "url": url}]})
    [delivery] = Notifier(config).send("start", {"release": "r1"})
    assert not delivery.ok and len(delivery.error) <= 200


# --- init --postgresql ----------------------------------------------------------------


def test_init_never_echoes_a_refused_urls_password(tmp_path: Path) -> None:
    playbook = tmp_path / "deploy.yml"
    playbook.write_text("- hosts: all\n  tasks: []\n")
    ran = relctl(tmp_path / "state", "init", "--service", "ledger", "--port", "8080",
                 "--playbook", str(playbook), "--repo", str(tmp_path / "repo"),
                 "--postgresql", f"postgresql://ledger:{PASSWORD}@db/ledger", "--json",
                 timeout=60)
    assert ran.returncode == 2, ran
    assert "--postgresql" in ran.stderr
    assert "postgresql://ledger:***@db/ledger" in ran.stderr
    assert json.loads(ran.stdout)["ok"] is False
    assert PASSWORD not in ran.stdout + ran.stderr
    assert not (tmp_path / "repo" / "relctl").exists()
