"""``relctl serve`` in a real browser (headless Debian Chromium driven by Playwright) on a
lab release in progress: the page, left open, shows apply waiting for a sign-off, takes
the sign-off, and shows the release's grid change until it is released; the status page
announces the window. Screenshots (mid-release, and released) are kept under
/var/tmp/relctl-tests/artifacts/."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import urllib3
import yaml

from tests.integration.conftest import LAB_PARENT, RunningLab
from tests.integration.ledger_http import served_versions
from tests.pg_cluster import free_port
from tests.relctl_cli import RELCTL, ROOT, deploy_ledger, example_text

pytestmark = pytest.mark.lab
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = LAB_PARENT / "artifacts"
TOKEN = "served-token-0123456789abcdef"
RELEASE = "served-1.1.0"

sync_api = pytest.importorskip("playwright.sync_api")


def manifest(folder: Path) -> Path:
    """ledger 1.1.0 as RELEASE: uat must sign it off (apply waits), a window around now,
    no load gate (this module proves the page, not the gate)."""
    data: dict[str, Any] = yaml.safe_load(example_text(ROOT / "examples/releases/"
                                                       "ledger-1.1.0.yml"))
    now = datetime.now(UTC)
    data.update(release=RELEASE, signoff={"required": ["uat"], "wait": "5m"},
                window={"start": (now - timedelta(minutes=5)).isoformat(),
                        "end": (now + timedelta(hours=1)).isoformat()})
    data["gates"]["locust"] = None
    path = folder / f"{RELEASE}.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def served(lab: RunningLab, tmp_path: Path) -> Iterator[str]:
    """``relctl serve`` on the lab's journal, with a token and the manifests' folder; its
    base URL. Stopped by its pid at the end."""
    token = tmp_path / "token"
    token.write_text(TOKEN)
    token.chmod(0o600)
    port = free_port("127.0.0.1")
    server = subprocess.Popen(
        [*RELCTL, "--state-dir", str(lab.state_dir), "serve", "--port", str(port),
         "--token-file", str(token), "--manifests", str(tmp_path / "*.yml")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if urllib3.request("GET", base + "/status/none.json", timeout=2).status:
                    break
            except urllib3.exceptions.HTTPError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, server.stderr
            time.sleep(0.2)
        yield base
    finally:
        server.terminate()
        try:
            server.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.communicate()
    assert server.returncode == 0  # SIGTERM: a stop asked for


def test_a_release_signed_off_and_followed_from_an_open_page(
        lab: RunningLab, served: str, tmp_path: Path) -> None:
    deployed = deploy_ledger(lab.state_dir, "1.0.0")
    assert deployed.returncode == 0, deployed.stderr
    release = manifest(tmp_path)
    with sync_api.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        apply = subprocess.Popen([*RELCTL, "--state-dir", str(lab.state_dir), "apply",
                                  str(release), "--yes"], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            # the server has a token: every client gives it (a browser: HTTP Basic)
            login: Any = {"username": "ops", "password": TOKEN, "send": "always"}
            page = browser.new_page(viewport={"width": 1280, "height": 1600},
                                    http_credentials=login)
            page.goto(served + "/")
            page.evaluate("window.relctlLoaded = 'once'")
            # apply asks for the sign-off after the page loaded: the page shows it by itself
            waiting = f'section.waiting[data-release="{RELEASE}"]'
            page.wait_for_selector(waiting, timeout=120_000)
            assert page.evaluate("window.relctlLoaded") == "once"  # no reload
            assert "missing: uat" in page.inner_text(waiting)
            status = browser.new_page(http_credentials=login)
            status.goto(served + "/status/ledger")
            assert "(now)" in status.inner_text("main")  # the window the manifest declares
            status.close()
            page.select_option(f"{waiting} select[name=role]", "uat")
            page.fill(f"{waiting} input[name=by]", "Uma Tester")
            page.fill(f"{waiting} input[name=token]", TOKEN)
            with page.expect_navigation():
                page.click(f"{waiting} button[type=submit]")
            page.evaluate("window.relctlLoaded = 'after sign-off'")
            grids = watch_grid(page, apply)
            assert page.evaluate("window.relctlLoaded") == "after sign-off"  # still no reload
            page.screenshot(path=str(ARTIFACTS / "serve-team-view.png"), full_page=True)
        finally:
            if apply.poll() is None:
                os.killpg(apply.pid, 9)
            _out, err = apply.communicate()
            browser.close()
    assert apply.returncode == 0, err
    assert served_versions(lab) == {"1.1.0"}
    assert len(grids) >= 2, grids  # the grid changed while the page stayed open
    assert any("running" in g for g in grids), grids
    history = grids[-1]
    assert "released" in history, history


READ_PAGE = """(release) => {
  const flight = document.querySelector(`section.flight[data-release="${release}"]`);
  if (flight) { return flight.innerText; }
  const main = document.querySelector("main");
  const history = main ? main.innerText.split("History").pop() : "";
  return history.split("\\n").find((line) => line.includes(release)) || "";
}"""


def watch_grid(page: Any, apply: subprocess.Popen[str]) -> list[str]:
    """Each distinct state of the release's grid (then of the history) the open page
    shows, until apply has ended and the page shows the release released. The page is
    read in one script call: the live part may be swapped between two locator calls."""
    seen: list[str] = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        text = str(page.evaluate(READ_PAGE, RELEASE))
        if text and (not seen or seen[-1] != text):
            if "running" in text and not any("running" in t for t in seen):
                ARTIFACTS.mkdir(parents=True, exist_ok=True)  # the grid mid-release
                page.screenshot(path=str(ARTIFACTS / "serve-release-in-flight.png"),
                                full_page=True)
            seen.append(text)
        if apply.poll() is not None and "released" in text:
            return seen
        time.sleep(0.1)
    raise AssertionError(f"the page never showed {RELEASE} released: {seen[-3:]}")
