"""Fewer lost requests: the HAProxy config relctl writes retries what is safe to retry,
and drills count failed requests split into idempotent and not (from Locust's CSV)."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import jinja2
import pytest

from controller.adapters.haproxy import BackendServer, RuntimeApi
from controller.adapters.locust import LoadRun, parse_stats, read_samples, run_load
from controller.errors import LabError
from controller.paths import bundled_playbook
from tests.http_target import LOCUSTFILE, HealthServer
from tests.pg_cluster import free_port

HOLD = bundled_playbook("files/relctl_hold.lua")

HEADER = ("Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,"
          "Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,"
          "50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%")
# As Locust 2 writes it: one row per (method, name), then the aggregate (no method).
ROWS = [
    "GET,GET /health,280,1,4,4.6,1.5,13.0,20.0,38.0,0.1,4,5,6,6,7,8,10,10,13,13,13",
    "GET,GET /tx/<id>,120,0,6,6.9,2.3,44.9,114.6,17.3,0.0,6,8,9,9,11,13,16,19,45,45,45",
    "POST,POST /tx,840,13,9,10.1,3.1,35.6,114.6,111.6,1.2,9,11,12,12,15,17,20,26,33,36,36",
    ",Aggregated,1240,14,7,8.0,1.5,44.9,100.6,257.0,1.3,7,9,10,11,13,15,18,21,33,45,45",
]


def test_failed_requests_split_by_idempotence(tmp_path: Path) -> None:
    csv = tmp_path / "load_stats.csv"
    csv.write_text("\n".join([HEADER, *ROWS]) + "\n")
    stats = parse_stats(csv)
    assert (stats.requests, stats.failures, stats.p95_ms) == (1240, 14, 15.0)
    assert stats.by_method == {"GET": (400, 1), "POST": (840, 13)}
    assert stats.split() == {"load_requests_idempotent": 400, "load_failures_idempotent": 1,
                             "load_requests_non_idempotent": 840,
                             "load_failures_non_idempotent": 13}


def render(tmp_path: Path, address: str = "127.0.0.1", port: int = 8080,
           frontend_port: int = 8000, admin_port: int = 9999, balance: str = "first",
           **more: object) -> Path:
    """The HAProxy config relctl's lb_setup.yml writes (its files where tmp_path says)."""
    template = bundled_playbook("templates/haproxy.cfg.j2")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(template.parent),
                             undefined=jinja2.StrictUndefined)
    base = address.rsplit(".", 1)[0]
    hosts = {"primary-1": f"{base}.2", "primary-2": f"{base}.3", "backup-1": f"{base}.4"}
    text = env.get_template(template.name).render(
        ansible_host=address, lb_admin_port=admin_port,
        lb_services=[{"name": "ledger", "port": port, "frontend_port": frontend_port,
                      "health_path": "/health", "balance": balance}],
        groups={"app_primary": ["primary-1", "primary-2"], "app_backup": ["backup-1"]},
        hostvars={h: {"ansible_host": a} for h, a in hosts.items()}, **more)
    text = text.replace("/etc/haproxy/relctl_hold.lua", str(HOLD)).replace(
        "/run/haproxy/admin.sock", str(tmp_path / "admin.sock")).replace(
        "/var/lib/haproxy/server-state", str(tmp_path / "server-state"))
    path = tmp_path / "haproxy.cfg"
    path.write_text(text)
    return path


def test_haproxy_retries_only_what_is_safe(tmp_path: Path) -> None:
    text = render(tmp_path).read_text()
    assert "retry-on conn-failure empty-response response-timeout\n" in text
    assert "option redispatch 1\n" in text and "retries 5\n" in text
    # a server whose connections fail is marked down at once, not after 3 health checks
    assert "observe layer4 error-limit 2 on-error mark-down" in text
    # a POST is never replayed once it may have reached the server
    assert "acl relctl_idempotent method GET HEAD OPTIONS PUT DELETE TRACE" in text
    assert "http-request disable-l7-retry if !relctl_idempotent" in text
    # a bad release's 5xx answers are not retried away from the release gates
    assert not any(code in text.split("retry-on", 1)[1].split("\n", 1)[0]
                   for code in ("500", "502", "503", "504"))


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed")
def test_haproxy_accepts_the_config(tmp_path: Path) -> None:
    config = render(tmp_path)
    checked = subprocess.run(["haproxy", "-c", "-f", str(config)], capture_output=True,
                             text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def _get(url: str) -> tuple[int, float]:
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=20) as answer:
            return answer.status, time.monotonic() - started
    except urllib.error.HTTPError as error:
        return error.code, time.monotonic() - started


@contextlib.contextmanager
def running_haproxy(tmp_path: Path, config: Path, endpoint: str,
                    ready: Callable[[list[BackendServer]], bool]) -> Iterator[RuntimeApi]:
    """HAProxy on ``config`` (no saved server states) until its runtime API at
    ``endpoint`` answers and ``ready`` says so of its servers; stopped by its pid."""
    (tmp_path / "server-state").write_text("")
    daemon = subprocess.Popen(["haproxy", "-db", "-f", str(config)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        api = RuntimeApi(endpoint)
        deadline = time.monotonic() + 10
        while True:
            try:
                servers: list[BackendServer] | None = api.servers()
            except LabError:  # not listening yet
                servers = None
            if servers is not None and ready(servers):
                break
            gone = daemon.poll() is not None
            assert time.monotonic() < deadline and not gone, (
                daemon.stderr.read().decode() if gone and daemon.stderr else servers)
            time.sleep(0.05)
        yield api
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed")
def test_a_request_waits_for_a_server_instead_of_a_503(tmp_path: Path) -> None:
    """While no server may take traffic (the primaries down, the backups out of service
    until a standby is promoted), a request waits in HAProxy and is served as soon as
    relctl puts a backup in service; with none by lb_hold_ms, HAProxy answers 503."""
    address = "127.0.91.1"  # the backup's service listens on 127.0.91.4
    with HealthServer("127.0.91.4") as backup:
        port = int(backup.url.rsplit(":", 1)[1])
        front, admin = free_port(address), free_port(address)
        config = render(tmp_path, address, port, front, admin, lb_hold_ms=1500)
        with running_haproxy(tmp_path, config, f"{address}:{admin}",
                             lambda _servers: True) as api:
            for server in ("primary-1", "primary-2", "backup-1"):
                api.set_state("ledger", server, "maint")
            url = f"http://{address}:{front}/health"
            status, waited = _get(url)  # nothing comes: held, then HAProxy's own 503
            assert status == 503 and 1.4 < waited < 5, (status, waited)
            timer = threading.Timer(0.5, api.set_state, ("ledger", "backup-1", "ready"))
            timer.start()
            status, waited = _get(url)  # backup-1 comes after 0.5 s: served then
            timer.join()
            assert status == 200 and 0.4 < waited < 1.4, (status, waited)


def _served_by(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return str(answer.headers.get("X-Served-By", ""))


@contextlib.contextmanager
def haproxy_over_two(tmp_path: Path, balance: str) -> Iterator[str]:
    """HAProxy (relctl's config, ``balance``) over two health servers, primary-1 and
    primary-2, both up; its frontend's URL."""
    address = "127.0.92.1"
    port = free_port("127.0.92.2")
    with HealthServer("127.0.92.2", port), HealthServer("127.0.92.3", port):
        front, admin = free_port(address), free_port(address)
        config = render(tmp_path, address, port, front, admin, balance=balance)
        with running_haproxy(tmp_path, config, f"{address}:{admin}", lambda servers: {
                s.status for s in servers if s.server.startswith("primary")} == {"UP"}):
            yield f"http://{address}:{front}"


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed")
@pytest.mark.parametrize(("balance", "expected"), [
    ("first", {"primary-1"}), ("roundrobin", {"primary-1", "primary-2"})])
def test_active_standby_or_active_active_as_the_lab_asks(
        tmp_path: Path, balance: str, expected: set[str]) -> None:
    """balance first: the first primary takes every request; roundrobin: both primaries
    answer in turn (as HAProxy itself names them in X-Served-By)."""
    with haproxy_over_two(tmp_path, balance) as url:
        served = {_served_by(f"{url}/health") for _ in range(10)}
    assert served == expected


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed")
def test_locust_samples_name_the_server_the_load_balancer_chose(tmp_path: Path) -> None:
    """relctl's Locust plugin, beside the user's locustfile: each request attributed to the
    server HAProxy names, with its latency; the user's own statistics unchanged."""
    with haproxy_over_two(tmp_path, "roundrobin") as url:
        run = LoadRun(LOCUSTFILE, url, 4, 4, 3, tmp_path / "out", "canary", samples=True)
        stats = run_load(run)
    samples = read_samples(run)
    assert set(samples) == {"primary-1", "primary-2"}
    counted = sum(s.requests for s in samples.values())
    # Locust's stats CSV stops a second before the run does (its own summary says more):
    # the plugin sees every request, the CSV's at least
    assert stats.requests > 50 and counted >= stats.requests
    assert all(s.failures == 0 and min(s.latencies_ms) >= 0 for s in samples.values())
    share = samples["primary-1"].requests / counted
    assert 0.35 < share < 0.65, share
