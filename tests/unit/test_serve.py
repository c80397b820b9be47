"""``relctl serve``: the pages and their rules, in-process (Starlette's test client) on a
journal written through the journal's own API, for a service that is not the sample."""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from controller.engine.signoff import manifest_ref
from controller.journal import Holder, Journal
from controller.manifest_loader import load_manifest
from controller.serve import board
from controller.serve.app import Changes, Journals, Settings, create_app
from tests.pg_cluster import free_port
from tests.relctl_cli import RELCTL, relctl
from tests.unit.example_tree import example_tree

TOKEN = "t0ken-for-the-tests-0123456789"
ADA = Holder("ada", "ctl-1", 4242, 1000.0)
HOSTILE_HOST = "web-<script>alert(1)</script>"
LOOPBACK = ("127.0.0.1", 50000)


def billing_manifest(tree: Path, version: str, extra: str = "") -> Path:
    """A manifest of a service named billing (the ledger example's items renamed)."""
    text = (tree / "examples/releases/ledger-1.1.0.yml").read_text()
    text = text.replace("release: ledger-1.1.0", f"release: billing-{version}")
    text = text.replace('version: "1.1.0"', f'version: "{version}"')
    text = text.replace("service: ledger", "service: billing")
    path = tree / "examples/releases" / f"billing-{version}.yml"
    path.write_text(text + extra)
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return example_tree(tmp_path / "repo")


@pytest.fixture
def journal_path(tmp_path: Path) -> Path:
    return tmp_path / "journal.sqlite"


@pytest.fixture
def journal(journal_path: Path) -> Iterator[Journal]:
    with Journal(journal_path) as opened:
        yield opened


def client(journal_path: Path, token: str | None = TOKEN, manifests: list[str] | None = None,
           address: tuple[str, int] = LOOPBACK, host: str = "127.0.0.1:8765",
           presented: str | None = TOKEN) -> TestClient:
    """A client of a server with ``token``; it presents ``presented`` (Bearer)."""
    settings = Settings(lambda: Journal(journal_path), token, manifests or [])
    headers = {"Authorization": f"Bearer {presented}"} if presented else {}
    return TestClient(create_app(settings), base_url=f"http://{host}", client=address,
                      headers=headers)


def released(journal: Journal, tree: Path, version: str) -> int:
    manifest = billing_manifest(tree, version)
    release_id = journal.start_release(
        name=f"billing-{version}", version=version, service="billing", environment="lab",
        manifest_path=manifest, manifest_sha256="0" * 64, operator=ADA)
    journal.set_host_state(release_id, "web-1", "verified", version_after=version)
    journal.set_release_state(release_id, "released", exit_code=0)
    return release_id


def in_flight(journal: Journal, tree: Path) -> int:
    """billing-1.2.0 half-way: snapshot done, the canary applying, a hostile host name."""
    manifest = billing_manifest(tree, "1.2.0")
    release_id = journal.start_release(
        name="billing-1.2.0", version="1.2.0", service="billing", environment="lab",
        manifest_path=manifest, manifest_sha256="1" * 64, operator=ADA, state="applying")
    journal.acquire_lock("lab", "billing-1.2.0", ADA)
    snap = journal.begin_phase(release_id, "snapshot")
    for host in ("web-1", HOSTILE_HOST):
        journal.set_host_state(release_id, host, "snapshotted", version_before="1.1.0")
        copy = journal.add_snapshot(release_id, host=host, item="code", kind="file",
                                    path=Path("/x"), sha256="a" * 64, size_bytes=1)
        journal.set_snapshot_verified(copy)
    journal.end_phase(snap, "ok")
    journal.begin_phase(release_id, "apply:canary", {"hosts": ["web-1"]})
    journal.set_host_state(release_id, "web-1", "applying")
    return release_id


def live_part(text: str) -> str:
    return text.split('<main id="live">', 1)[1].split("</main>", 1)[0]


def test_team_view_shows_the_grid_the_lock_and_escapes_what_it_shows(
        journal: Journal, journal_path: Path, tree: Path) -> None:
    released(journal, tree, "1.1.0")
    in_flight(journal, tree)
    with client(journal_path) as web:
        page = web.get("/")
    assert page.status_code == 200
    text = page.text
    assert "<script>alert(1)" not in text and "web-&lt;script&gt;alert(1)" in text
    flight = text.split('data-release="billing-1.2.0"', 1)[1].split("</section>", 1)[0]
    row = flight.split('data-host="web-1"', 1)[1].split("</tr>", 1)[0]
    assert re.findall(r'<td class="(\w*)">', row) == ["hoststate", "ok", "running"]
    assert "phase now: apply:canary" in flight and "rollback ready: 2 verified copies" in flight
    assert ("<td>lab</td><td>billing-1.2.0</td><td>ada@ctl-1 (pid 4242) (holder on another "
            "machine)</td>") in text
    assert "billing-1.1.0</a> (1.1.0)" in text  # the last good release of billing in lab
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'sha256-" in csp


def test_history_filters_and_the_fragment_the_live_script_fetches(
        journal: Journal, journal_path: Path, tree: Path) -> None:
    released(journal, tree, "1.1.0")
    in_flight(journal, tree)
    with client(journal_path) as web:
        failed = web.get("/?state=released")
        part = web.get("/", headers={"X-Fragment": "1"})
    history = failed.text.split("<h2>History</h2>", 1)[1]
    assert "billing-1.1.0" in history and "billing-1.2.0" not in history
    assert not part.text.lstrip().startswith("<!DOCTYPE") and "<h2>History</h2>" in part.text


def test_release_page_and_unknown_names(journal: Journal, journal_path: Path,
                                        tree: Path) -> None:
    in_flight(journal, tree)
    with client(journal_path) as web:
        page = web.get("/releases/billing-1.2.0")
        missing = web.get("/releases/nope-1.0")
        hostile = web.get("/releases/%3Cscript%3E")
    assert page.status_code == 200 and "<h2>Hosts by phase</h2>" in page.text
    assert "Release report: billing-1.2.0" in page.text
    assert missing.status_code == 404 and hostile.status_code == 404
    assert "<script>" not in hostile.text.replace(LIVE, "")


LIVE = create_app.__globals__["pages"].LIVE_SCRIPT.split("\n", 1)[0]


def test_status_page_tells_users_what_they_may_know_and_no_more(
        journal: Journal, journal_path: Path, tree: Path) -> None:
    released(journal, tree, "1.1.0")
    now = datetime.now(UTC)
    window = (f"window:\n  start: {(now - timedelta(minutes=5)).isoformat()}\n"
              f"  end: {(now + timedelta(hours=1)).isoformat()}\n")
    billing_manifest(tree, "1.3.0", window)
    globs = [str(tree / "examples/releases/billing-*.yml")]
    with client(journal_path, manifests=globs) as web:
        normal = web.get("/status/billing.json").json()
        in_flight(journal, tree)
        busy = web.get("/status/billing")
        data = web.get("/status/billing.json").json()
        unknown = web.get("/status/nobody.json")
    assert normal["state"] == "normal" and normal["headline"] == "All systems normal."
    assert len(normal["windows"]) == 1 and normal["windows"][0]["now"] is True
    assert data["state"] == "release" and "in progress" in data["headline"]
    assert busy.status_code == 200 and data["headline"] in busy.text and "(now)" in busy.text
    for secret in ("web-1", "ctl-1", "1.2.0", "1.1.0", "ada", "sha256"):
        assert secret not in live_part(busy.text) and secret not in json.dumps(data)
    assert '<a href="/">' not in busy.text  # no way into the team view from a user's page
    assert unknown.status_code == 404


def waiting(journal: Journal, tree: Path) -> Path:
    """apply of billing-1.3.0 waits for the uat sign-off (as require_signoffs records it)."""
    path = billing_manifest(tree, "1.3.0", "signoff:\n  required: [uat]\n")
    journal.request_signoff("billing-1.3.0", manifest_ref(load_manifest(path)))
    return path


def test_a_signoff_from_the_page_needs_the_token_and_signs_what_apply_waits_for(
        journal: Journal, journal_path: Path, tree: Path) -> None:
    released(journal, tree, "1.1.0")
    path = waiting(journal, tree)
    sha = manifest_ref(load_manifest(path)).sha256
    form = {"release": "billing-1.3.0", "role": "uat", "by": "Uma Tester", "note": "UAT-7",
            "sha256": sha}
    with client(journal_path) as web:
        page = web.get("/").text
        assert 'data-release="billing-1.3.0"' in page and "missing: <b>uat</b>" in page
        assert "+version: &quot;1.3.0&quot;" in page  # the difference from billing-1.1.0's
        wrong = web.post("/signoff", data={**form, "token": "guess"})
        foreign = web.post("/signoff", data={**form, "token": TOKEN},
                           headers={"Origin": "http://evil.example"})
        stale = web.post("/signoff", data={**form, "token": TOKEN, "sha256": "f" * 64})
        assert [r.status_code for r in (wrong, foreign, stale)] == [403, 403, 400]
        assert journal.signoffs("billing-1.3.0") == []
        done = web.post("/signoff", data={**form, "token": TOKEN}, follow_redirects=False)
        assert done.status_code == 303
        assert 'data-release="billing-1.3.0"' not in web.get("/").text  # no longer waiting
    signed = journal.signoffs("billing-1.3.0")
    assert [(s.role, s.by, s.note) for s in signed] == [("uat", "Uma Tester", "UAT-7")]
    assert signed[0].signed is not None and signed[0].signed.sha256 == sha
    with client(journal_path, token=None) as web:
        off = web.post("/signoff", data={**form, "token": TOKEN})
    assert off.status_code == 403 and "--token-file" in off.text


def test_a_loopback_client_must_name_a_loopback_host(journal_path: Path) -> None:
    """A page of another site whose name resolves to 127.0.0.1 (DNS rebinding) reads
    nothing."""
    Journal(journal_path).close()
    with client(journal_path, host="evil.example:8765") as web:
        rebound = web.get("/")
    with client(journal_path, host="localhost:8765") as web:
        local = web.get("/")
    with client(journal_path, host="[::1]:8765") as web:
        six = web.get("/")
    assert (rebound.status_code, local.status_code, six.status_code) == (421, 200, 200)


def test_with_a_token_every_client_presents_it(journal_path: Path) -> None:
    """A proxy on the controller makes every remote client a loopback one, and other
    users of the controller are loopback clients: with a token, loopback is no pass."""
    Journal(journal_path).close()
    with client(journal_path, presented=None) as web:
        bare = [web.get(path) for path in ("/", "/status/billing", "/status/billing.json")]
        bearer = web.get("/", headers={"Authorization": f"Bearer {TOKEN}"})
    assert [r.status_code for r in bare] == [401, 401, 401]
    assert "Basic" in bare[0].headers["www-authenticate"] and bearer.status_code == 200
    with client(journal_path, token=None, presented=None) as web:
        assert web.get("/").status_code == 200  # no token: loopback reads, as documented


def test_off_loopback_everything_needs_the_token(journal_path: Path) -> None:
    Journal(journal_path).close()
    with client(journal_path, address=("192.0.2.7", 40000), presented=None) as web:
        refused = web.get("/")
        bearer = web.get("/", headers={"Authorization": f"Bearer {TOKEN}"})
        basic = web.get("/", auth=("anyone", TOKEN))
        wrong = web.get("/", auth=("anyone", "nope"))
    assert refused.status_code == 401 and "Basic" in refused.headers["www-authenticate"]
    assert (bearer.status_code, basic.status_code, wrong.status_code) == (200, 200, 401)


def applied(path: Path, release_id: int) -> None:
    with Journal(path) as other:  # another controller's write
        other.set_host_state(release_id, "web-1", "applied")


def test_a_journal_change_reaches_a_listening_page_within_a_second(
        journal: Journal, journal_path: Path, tree: Path) -> None:
    release_id = in_flight(journal, tree)

    async def listen() -> list[str]:
        changes = Changes(Journals(lambda: Journal(journal_path)), poll_s=0.05)
        poller = asyncio.create_task(changes.run())
        stream = changes.stream()
        said = [await anext(stream)]
        await asyncio.sleep(0.3)  # the poller has read the mark once
        await asyncio.to_thread(applied, journal_path, release_id)
        said.append(await asyncio.wait_for(anext(stream), 1.0))
        poller.cancel()
        await stream.aclose()
        return said

    said = asyncio.run(listen())
    assert said[0].startswith("retry:") and said[1].startswith("event: change")


def test_a_change_between_a_page_and_its_stream_still_reaches_it(
        journal: Journal, journal_path: Path, tree: Path) -> None:
    """The page was rendered, then the journal changed, then its stream opened and the
    poller read the mark for the first time: that change must still wake the page (it
    took the changed mark as its baseline, and the page waited for ever: the browser
    test's sign-off never showed about half the time)."""
    release_id = in_flight(journal, tree)

    async def listen() -> list[str]:
        changes = Changes(Journals(lambda: Journal(journal_path)), poll_s=0.05)
        seen = await changes.baseline()  # the stream's request: before its response
        await asyncio.to_thread(applied, journal_path, release_id)
        poller = asyncio.create_task(changes.run())
        stream = changes.stream(seen)
        said = [await anext(stream), await asyncio.wait_for(anext(stream), 1.0)]
        poller.cancel()
        await stream.aclose()
        return said

    said = asyncio.run(listen())
    assert said[1].startswith("event: change"), said


def test_the_change_mark_moves_with_what_the_pages_show(journal: Journal, tree: Path) -> None:
    marks = [journal.change_mark()]
    release_id = in_flight(journal, tree)
    marks.append(journal.change_mark())
    journal.set_host_state(release_id, "web-1", "applied")
    marks.append(journal.change_mark())
    journal.release_lock("lab", "billing-1.2.0")
    marks.append(journal.change_mark())
    assert len(set(marks)) == len(marks)
    assert journal.change_mark() == marks[-1]  # nothing changed: the same mark


def test_serve_refuses_a_loose_token_file_and_an_open_address(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(TOKEN)
    token.chmod(0o644)
    loose = relctl(tmp_path / "state", "serve", "--token-file", str(token), timeout=60)
    assert loose.returncode == 2 and "chmod 600" in loose.stderr
    open_host = relctl(tmp_path / "state", "serve", "--host", "0.0.0.0", timeout=60)
    assert open_host.returncode == 2 and "need --token-file" in open_host.stderr
    token.chmod(0o600)
    clear = relctl(tmp_path / "state", "serve", "--host", "0.0.0.0", "--token-file",
                   str(token), timeout=60)
    assert clear.returncode == 2 and "--tls-cert" in clear.stderr
    assert TOKEN not in loose.stderr + open_host.stderr + clear.stderr


def test_grid_of_a_phase_still_running_names_its_hosts(journal: Journal, tree: Path) -> None:
    release_id = in_flight(journal, tree)
    view = board.in_flight(journal, journal.release(release_id))
    assert view.grid.phases == ["snapshot", "apply:canary"]
    assert dict((h, cells) for h, _s, cells in view.grid.rows) == {
        "web-1": ["ok", "running"], HOSTILE_HOST: ["ok", ""]}


def test_a_drill_shows_its_timeline_as_it_happens_and_users_see_an_exercise(
        journal: Journal, journal_path: Path, tree: Path) -> None:
    released(journal, tree, "1.1.0")
    drill = journal.begin_continuity("drill", "billing", "lab", {"faults_state": "planned"})
    journal.update_continuity(drill, {"faults_state": "injected", "timeline": [
        [0.1, "load started: Locust, 20 users"], [2.0, "fault injected: <kill> web-1"]]})
    with client(journal_path) as web:
        team = web.get("/").text
        users = web.get("/status/billing.json").json()
    drills = team.split("<h2>Drills</h2>", 1)[1].split("<h2>", 1)[0]
    assert "2.0 s fault injected: &lt;kill&gt; web-1" in drills and "running" in drills
    assert users["state"] == "drill" and "planned continuity exercise" in users["headline"]
    assert users["incidents"][0]["kind"] == "drill (planned exercise)"
    assert "web-1" not in json.dumps(users)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed "
                    "(scripts/install-deps.sh installs it)")
def test_serve_over_https_with_the_users_certificate(tmp_path: Path) -> None:
    """The real server (uvicorn) with --tls-cert/--tls-key: HTTPS answers, verified
    against the certificate; plain HTTP gets nothing; SIGTERM stops it, exit 0."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    port = free_port("127.0.0.1")
    server = subprocess.Popen([*RELCTL, "--state-dir", str(tmp_path / "state"), "serve",
                               "--port", str(port), "--tls-cert", str(cert), "--tls-key",
                               str(key)], stderr=subprocess.PIPE, text=True)
    try:
        context = ssl.create_default_context(cafile=str(cert))
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"https://127.0.0.1:{port}/",
                                            context=context, timeout=5) as answer:
                    assert answer.status == 200 and b"releases and continuity" in answer.read()
                break
            except (urllib.error.URLError, ConnectionError):
                assert server.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
        with pytest.raises((urllib.error.URLError, ConnectionError, http.client.HTTPException)):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5)
    finally:
        server.terminate()
        _out, err = server.communicate(timeout=30)
    assert server.returncode == 0, err
    assert "https://127.0.0.1" in err


def test_the_latency_chart_of_a_release_in_flight_and_the_last_replica_per_plan(
        journal: Journal, journal_path: Path, tree: Path) -> None:
    release_id = in_flight(journal, tree)
    journal.add_gate_result(release_id, phase="candidate", kind="locust", verdict="pass",
                            figures={"baseline": {"p50_ms": 4, "p95_ms": 9, "p99_ms": 12},
                                     "candidate": {"p50_ms": 5, "p95_ms": 11, "p99_ms": 15}})
    replica = journal.begin_continuity("replication", "billing", "lab",
                                       {"plan": "/plans/billing-dr.yml"})
    journal.end_continuity(replica, "ok", {"captured_at": datetime.now(UTC).isoformat()})
    with client(journal_path) as web:
        text = web.get("/").text
    flight = text.split('data-release="billing-1.2.0"', 1)[1].split("</section>", 1)[0]
    assert "<svg" in flight and "candidate p95 11 ms" in flight
    replication = text.split("<h2>Replication</h2>", 1)[1].split("<h2>", 1)[0]
    assert "/plans/billing-dr.yml" in replication and f"#{replica}" in replication


def test_a_journal_that_cannot_be_read_is_a_503_without_a_traceback(tmp_path: Path) -> None:
    broken = tmp_path / "journal.sqlite"
    broken.write_text("not a database, and no secret in the answer\n" * 20)
    with client(broken) as web:
        answer = web.get("/")
    assert answer.status_code == 503
    assert answer.text.startswith("relctl serve: the journal could not be read")
    assert "Traceback" not in answer.text
