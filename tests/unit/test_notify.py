"""Maintenance notices: content, templates, and the webhook, outbox and stdout channels.

The webhook tests post to a real HTTP receiver on 127.0.0.1 (port 0, in a thread); a dead
channel is a port nobody listens on. Nothing leaves the loopback interface.
"""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from email import policy
from email.parser import BytesParser
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import pytest

from controller.engine.environment import Environment
from controller.engine.release import ReleaseEngine
from controller.errors import ExitCode
from controller.journal import Journal
from controller.manifest_loader import ConfigError, load_manifest
from controller.models.manifest import Manifest
from controller.models.notify import NotifyConfig, masked_url
from controller.notify import Notifier, notice_context, notify_event
from tests.relctl_cli import relctl
from tests.unit.example_tree import example_tree, manifest_with

SECRET = "T0KEN-s3cr3t-9f8e7d"
USER_SECRET = "pa55w0rd-hunter2"
QUERY_SECRET = "sig-QQ77-secret"
CET = timezone(timedelta(hours=1))


# --- a local webhook receiver -----------------------------------------------------------


@dataclass(frozen=True)
class Received:
    path: str
    content_type: str
    authorization: str
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver(ThreadingHTTPServer):
    """An HTTP server on 127.0.0.1 that records every POST and answers ``status``."""

    def __init__(self, status: int = 200, delay_s: float = 0.0) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.status, self.delay_s = status, delay_s
        self.received: list[Received] = []

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the timeout test's client hangs up before the slow answer: expected


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        receiver = cast(Receiver, self.server)
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        receiver.received.append(Received(self.path, self.headers["Content-Type"],
                                          self.headers.get("Authorization", ""), body))
        time.sleep(receiver.delay_s)
        self.send_response(receiver.status)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *_args: Any) -> None:
        pass


def serve(status: int = 200, delay_s: float = 0.0) -> Iterator[Receiver]:
    receiver = Receiver(status, delay_s)
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.shutdown()
        receiver.server_close()
        thread.join(timeout=5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from serve()


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)


def dead_port() -> int:
    """A loopback port nobody listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def secret_url(base: str) -> str:
    host = base.removeprefix("http://")
    return f"http://relctl:{USER_SECRET}@{host}/services/{SECRET}?s={QUERY_SECRET}"


def webhook(url: str, timeout: str = "2s") -> NotifyConfig:
    return NotifyConfig.model_validate(
        {"channels": [{"kind": "webhook", "url": url, "timeout": timeout}]})


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in (SECRET, USER_SECRET, QUERY_SECRET):
            assert secret not in text


# --- manifests ----------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return example_tree(tmp_path / "tree")


def manifest(**updates: Any) -> Manifest:
    base = {
        "release": "ledger-1.1.0", "version": "1.1.0", "service": "ledger",
        "environment": "production", "targets": "app_primary",
        "items": [{"kind": "file", "name": "conf", "path": "/etc/ledger/ledger.conf"}],
        "playbooks": {"apply": ["deploy.yml"]},
        "owners": {"release_manager": "Ada Ops"},
        "strategy": {"canary": 1, "batch_size": 2},
    }
    return Manifest.model_validate({**base, **updates})


CONTEXT = {"service": "ledger", "version": "1.1.0", "release": "ledger-1.1.0",
           "environment": "production", "contact": "Ada Ops", "reason": "canary failed"}


# --- notice content -----------------------------------------------------------------------


def test_notice_says_what_when_interruption_and_contact() -> None:
    window = {"start": "2026-12-01T22:00:00+01:00", "end": "2026-12-02T02:00:00+01:00"}
    fields = notice_context(manifest(window=window), "plan", now=datetime(2026, 11, 30, tzinfo=UTC),
                            hosts=["primary-1", "primary-2", "primary-3"])
    assert fields["service"] == "ledger" and fields["version"] == "1.1.0"
    assert fields["when"] == "from 2026-12-01 22:00+01:00 to 2026-12-02 02:00+01:00"
    assert fields["interruption"].startswith("rolling update, canary first (1 host), then "
                                             "2 hosts at a time: no full outage expected")
    assert fields["contact"] == "Ada Ops"


def test_a_single_host_means_an_outage_and_the_config_can_say_it_better() -> None:
    single = notice_context(manifest(), "start", now=datetime.now(UTC), hosts=["only-1"])
    assert single["interruption"] == "the service is unavailable while its only host is updated"
    notify = {"channels": [{"kind": "stdout"}], "contact": "Service desk, ext. 4242",
              "interruption": "up to 5 minutes of read-only mode"}
    own = notice_context(manifest(notify=notify), "start", now=datetime.now(UTC))
    assert own["interruption"] == "up to 5 minutes of read-only mode"
    assert own["contact"] == "Service desk, ext. 4242"


def test_rollback_notice_carries_the_reason() -> None:
    out = io.StringIO()
    notifier = Notifier(NotifyConfig.model_validate({"channels": [{"kind": "stdout"}]}), out)
    [delivery] = notifier.announce(manifest(), "rollback", reason="p95 412 ms > 300 ms")
    assert delivery.ok
    assert "Maintenance rolled back: ledger in production" in out.getvalue()
    assert "Why:          p95 412 ms > 300 ms" in out.getvalue()


def test_events_not_configured_send_nothing() -> None:
    config = NotifyConfig.model_validate({"channels": [{"kind": "stdout"}],
                                          "events": ["success"]})
    out = io.StringIO()
    assert Notifier(config, out).send("start", CONTEXT) == []
    assert Notifier(None).send("start", CONTEXT) == []
    assert out.getvalue() == ""


# --- webhook ------------------------------------------------------------------------------


@pytest.mark.usefixtures("no_proxy")
def test_webhook_posts_a_slack_compatible_payload(receiver: Receiver) -> None:
    [delivery] = Notifier(webhook(secret_url(receiver.base))).send("start", CONTEXT)
    assert delivery.ok, delivery.error
    assert delivery.detail == "HTTP 200"
    [got] = receiver.received
    assert got.path == f"/services/{SECRET}?s={QUERY_SECRET}"
    assert got.content_type == "application/json"
    credentials = base64.b64encode(f"relctl:{USER_SECRET}".encode()).decode()
    assert got.authorization == f"Basic {credentials}"  # user info sent as basic auth
    payload = got.json()
    assert payload["text"].startswith("Maintenance started: ledger 1.1.0 in production")
    header, section, context = payload["blocks"]
    assert header == {"type": "header", "text": {
        "type": "plain_text", "text": "Maintenance started: ledger 1.1.0 in production"}}
    assert section["type"] == "section" and section["text"]["type"] == "mrkdwn"
    assert "Contact:      Ada Ops" in section["text"]["text"]
    assert context["elements"][0]["text"] == "relctl · start · ledger-1.1.0"


@pytest.mark.usefixtures("no_proxy")
def test_webhook_url_from_the_environment(receiver: Receiver,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    config = NotifyConfig.model_validate(
        {"channels": [{"kind": "webhook", "url_env": "RELCTL_TEST_HOOK"}]})
    monkeypatch.delenv("RELCTL_TEST_HOOK", raising=False)
    [unset] = Notifier(config).send("success", CONTEXT)
    assert not unset.ok and unset.error == "$RELCTL_TEST_HOOK is not set: no webhook URL"
    monkeypatch.setenv("RELCTL_TEST_HOOK", f"{receiver.base}/hook/{SECRET}")
    [sent] = Notifier(config).send("success", CONTEXT)
    assert sent.ok and sent.channel == "webhook $RELCTL_TEST_HOOK"
    assert receiver.received[0].json()["text"].startswith("Maintenance complete")


@pytest.mark.usefixtures("no_proxy")
def test_a_dead_webhook_does_not_raise_and_is_reported_failed(tmp_path: Path) -> None:
    url = secret_url(f"http://127.0.0.1:{dead_port()}")
    started = time.monotonic()
    with Journal(tmp_path / "journal.sqlite") as journal:
        deliveries = notify_event(webhook(url), "failover", CONTEXT, journal)
        events = [e.message for e in journal.events()]
    assert time.monotonic() - started < 5
    [delivery] = deliveries
    assert not delivery.ok
    assert "refused" in delivery.error.lower()
    assert delivery.channel == f"webhook {masked_url(url)}"
    assert delivery.channel.endswith("/***")
    assert events == [delivery.summary()]
    assert "FAILED" in events[0]
    assert_no_secret(delivery.error, delivery.channel, delivery.summary(), *events)


@pytest.mark.usefixtures("no_proxy")
@pytest.mark.parametrize(("status", "delay_s", "expected"),
                         [(404, 0.0, "HTTP 404 Not Found"), (200, 1.0, "timed out")])
def test_webhook_errors_and_timeouts_fail_without_the_secret(status: int, delay_s: float,
                                                             expected: str) -> None:
    for server in serve(status, delay_s):
        [delivery] = Notifier(webhook(secret_url(server.base), "300ms")).send("start", CONTEXT)
        assert not delivery.ok
        assert expected in delivery.error
        assert_no_secret(delivery.error, delivery.channel, delivery.summary())


def test_the_webhook_url_stays_out_of_dumps_and_reprs() -> None:
    url = secret_url("http://127.0.0.1:9")
    m = manifest(notify={"channels": [{"kind": "webhook", "url": url}]})
    assert_no_secret(m.model_dump_json(), repr(m), str(m.model_dump()))
    assert masked_url(url) == "http://127.0.0.1:9/***"


# --- outbox -------------------------------------------------------------------------------


def test_outbox_writes_a_parseable_eml(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    config = NotifyConfig.model_validate({"channels": [{
        "kind": "outbox", "dir": str(outbox), "to": ["users@example.com", "Ops <ops@example.com>"],
        "from": "relctl@example.com"}]})
    [delivery] = Notifier(config).send("success", CONTEXT)
    assert delivery.ok, delivery.error
    assert [p.name for p in outbox.iterdir()] == [Path(delivery.detail).name]  # no temp file
    message = BytesParser(policy=policy.default).parsebytes(Path(delivery.detail).read_bytes())
    assert message["Subject"] == "Maintenance complete: ledger 1.1.0 is live in production"
    assert message["From"] == "relctl@example.com"
    assert [a.addr_spec for a in message["To"].addresses] == ["users@example.com",
                                                               "ops@example.com"]
    assert abs(parsedate_to_datetime(message["Date"]) - datetime.now(UTC)) < timedelta(minutes=1)
    assert message["Message-ID"].endswith("@example.com>")
    assert message["X-Relctl-Event"] == "success"
    body = message.get_body(("plain",))
    assert body is not None and "ledger now runs version 1.1.0" in body.get_content()


def test_an_outbox_that_cannot_be_written_is_a_failed_delivery(tmp_path: Path) -> None:
    (tmp_path / "not-a-dir").write_text("a file where the outbox should be")
    config = NotifyConfig.model_validate({"channels": [
        {"kind": "outbox", "dir": str(tmp_path / "not-a-dir"), "to": ["u@example.com"]},
        {"kind": "stdout"}]})
    out = io.StringIO()
    failed, printed = Notifier(config, out).send("rollback", CONTEXT)
    assert not failed.ok and "cannot write to the outbox" in failed.error
    assert printed.ok and "canary failed" in out.getvalue()


# --- templates and the manifest -----------------------------------------------------------


NOTIFY_YAML = """\
notify:
  channels:
    - {kind: outbox, dir: outbox, to: [users@example.com], from: ops@example.com}
    - {kind: stdout}
"""


def test_user_templates_override_the_built_in_ones(tree: Path) -> None:
    templates = tree / "examples" / "releases" / "notices"
    templates.mkdir()
    (templates / "start.txt").write_text("Heads up: $service $version\nCall $contact.\n")
    path = manifest_with(tree, "custom", NOTIFY_YAML + "  templates_dir: notices\n")
    loaded = load_manifest(path)
    assert loaded.notify is not None and loaded.notify.templates_dir == templates
    notifier = Notifier(loaded.notify.model_copy(update={"channels": []}))
    start = notifier.render("start", notice_context(loaded, "start", now=datetime.now(CET)))
    assert (start.subject, start.body) == ("Heads up: ledger 1.1.0", "Call Ada Ops.\n")
    success = notifier.render("success", notice_context(loaded, "success", now=datetime.now(CET)))
    assert success.subject == "Maintenance complete: ledger 1.1.0 is live in lab"


@pytest.mark.parametrize(("name", "text", "expected"), [
    ("start.txt", "Hello $servise\n", "unknown placeholder $servise (did you mean $service?)"),
    ("sucess.txt", "Done\n", "sucess.txt in templates_dir is no event's template"),
])
def test_bad_templates_are_refused_when_the_manifest_loads(tree: Path, name: str, text: str,
                                                           expected: str) -> None:
    templates = tree / "examples" / "releases" / "notices"
    templates.mkdir()
    (templates / name).write_text(text)
    path = manifest_with(tree, "bad", NOTIFY_YAML + "  templates_dir: notices\n")
    with pytest.raises(ConfigError, match="notify") as caught:
        load_manifest(path)
    assert expected in caught.value.message


def test_outbox_dir_is_relative_to_the_manifest(tree: Path) -> None:
    loaded = load_manifest(manifest_with(tree, "outbox", NOTIFY_YAML))
    assert loaded.notify is not None
    outbox = loaded.notify.channels[0]
    assert getattr(outbox, "dir", None) == tree / "examples" / "releases" / "outbox"


def test_webhook_needs_exactly_one_url(tree: Path) -> None:
    path = manifest_with(tree, "hook", "notify:\n  channels:\n    - {kind: webhook}\n")
    with pytest.raises(ConfigError, match="give exactly one of 'url' and 'url_env'"):
        load_manifest(path)


# --- the engine and the CLI ---------------------------------------------------------------


@pytest.mark.usefixtures("no_proxy")
@pytest.mark.parametrize(("state", "code", "message", "event"), [
    ("released", ExitCode.OK, "ledger-1.1.0 released to 1 hosts", "success"),
    ("rolled_back", ExitCode.ROLLED_BACK, "rolled back: testinfra fail on canary", "rollback"),
])
def test_the_engine_journals_its_notices_and_a_dead_channel_changes_no_outcome(
        tmp_path: Path, state: str, code: ExitCode, message: str, event: str) -> None:
    dead = secret_url(f"http://127.0.0.1:{dead_port()}")
    m = manifest(notify={"channels": [{"kind": "webhook", "url": dead}, {"kind": "stdout"}]})
    out, progress = io.StringIO(), []
    with Journal(tmp_path / "journal.sqlite") as journal:
        engine = ReleaseEngine(m, Environment(tmp_path, tmp_path / "hosts.yml",
                                              tmp_path / "ansible.cfg", None),
                               journal, progress.append, Notifier(m.notify, out))
        release_id = journal.start_release(
            name=m.release, version=m.version, service=m.service, environment=m.environment,
            manifest_path=tmp_path / "m.yml", manifest_sha256="")
        outcome = engine._finish(release_id, state, code, message, ["primary-1"], 0.0)
        events = [e.message for e in journal.events(release_id)]
    assert (outcome.state, outcome.exit_code) == (state, int(code))
    failed = [e for e in events if e.startswith(f"notice {event} via webhook")]
    assert len(failed) == 1 and "FAILED" in failed[0]
    assert f"notice {event} via stdout: sent (printed)" in events
    assert "testinfra fail on canary" in out.getvalue() or event == "success"
    assert_no_secret(*events, *progress, out.getvalue())


def test_cli_notice_sends_the_plan_notice_and_keeps_json_clean(tree: Path,
                                                               tmp_path: Path) -> None:
    path = manifest_with(tree, "notice", NOTIFY_YAML)
    state = tmp_path / "state"
    result = relctl(state, "notice", str(path), "--send", "--json",
                    env={"RELCTL_JOURNAL": str(state / "journal.sqlite")})
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)  # the stdout channel printed to stderr
    assert document["failed"] == 0 and len(document["deliveries"]) == 2
    assert "Planned maintenance: ledger 1.1.0 in lab" in result.stderr
    [eml] = (tree / "examples" / "releases" / "outbox").glob("*.eml")
    assert "plan" in eml.name
    with Journal(state / "journal.sqlite") as journal:
        assert any(e.message.startswith("notice plan via outbox") for e in journal.events())
