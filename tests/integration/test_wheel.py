"""relctl as a user gets it: a wheel installed into a fresh virtualenv outside this
checkout, run from the user's own repository on a service it has never seen.

The service is examples/notes (code in /opt/notes, config in /etc/notes, SQLite data in
/var/lib/notes), copied into a repository of its own; `relctl init` writes its manifest,
continuity plan, testinfra gate and Locust file. Two versions are released through the
lab's load balancer with both gates, then a broken third (its config moves the port):
rolled back, exit 3, every item back byte for byte on every host, the LB serving the
second version.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller import __version__
from tests.integration.ansible_cli import shell
from tests.integration.conftest import new_state_dir
from tests.relctl_cli import ROOT

pytestmark = pytest.mark.lab
WORK = Path("/var/tmp/relctl-wheel")
NOTES = ROOT / "examples" / "notes"
BASE = "127.0.9.160"
VERSIONS = ("1.0.0", "1.1.0", "1.2.0")
# What a rollback must put back on each host, each read as one digest: code and config
# byte for byte; the database by its content (SQLite's backup API, which snapshots and
# restores it while the service runs, rewrites the file header's change counters).
ITEM_DIGESTS = {
    "code": "readlink /opt/notes/current; "
            "cd /opt/notes/current/ && sha256sum $(find . -type f | sort)",
    "config": "sha256sum /etc/notes/notes.conf",
    "data": "python3 -c 'import sqlite3; print(*sqlite3.connect(\"/var/lib/notes/notes.db\")"
            ".iterdump(), sep=chr(10))'",
}


@dataclass
class UserRepo:
    """The user's repository, the installed relctl and the lab it releases to."""

    relctl: Path
    repo: Path
    state_dir: Path

    def run(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        """The installed relctl, run from the user's repository."""
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        return subprocess.run([str(self.relctl), "--state-dir", str(self.state_dir), *args],
                              cwd=self.repo, capture_output=True, text=True, env=env,
                              timeout=timeout, check=False)

    def lab_status(self) -> dict[str, Any]:
        status = self.run("lab", "status", "--json")
        assert status.returncode == 0, status.stderr
        return json.loads(status.stdout)  # type: ignore[no-any-return]


def _build_and_install() -> Path:
    """Build relctl's wheel and install it into a new virtualenv; return its relctl.
    The wheel is built from a copy of the checkout: setuptools builds in the tree it is
    given (build/, *.egg-info), and a test writes nothing into the source tree."""
    shutil.rmtree(WORK, ignore_errors=True)
    source, dist = WORK / "source", WORK / "dist"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis",
        ".ansible"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist),
                    str(source)], check=True, capture_output=True, cwd=WORK.parent)
    wheel = next(dist.glob("relctl-*.whl"))
    venv = WORK / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # --no-compile: Python compiles what relctl imports when it does (the ~2,000 modules
    # of its dependencies compiled up front cost this test CPU and prove nothing)
    install = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-compile",
                              str(wheel)], capture_output=True, text=True, check=False)
    assert install.returncode == 0, install.stderr[-2000:]
    return venv / "bin" / "relctl"


def _user_repository(root: Path) -> Path:
    """The notes service's own repository: its code, build script and deploy playbook."""
    repo = root / "notes-ops"
    shutil.copytree(NOTES, repo, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, str(repo / "build.py"), "--out", str(repo / "build"),
                    *VERSIONS], check=True, capture_output=True)
    return repo


@pytest.fixture(scope="module")
def user(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UserRepo]:
    if os.geteuid() != 0 or shutil.which("haproxy") is None:
        pytest.skip("the staging lab needs root, openssh-server and haproxy (run make test)")
    relctl = _build_and_install()
    repo = _user_repository(tmp_path_factory.mktemp("user"))
    ctx = UserRepo(relctl, repo, new_state_dir())
    up = ctx.run("lab", "up", "--primary", "2", "--backup", "1", "--base-address", BASE,
                 "--service", "notes:9090/health")
    try:
        assert up.returncode == 0, up.stderr
        yield ctx
    finally:
        down = ctx.run("lab", "down")
        shutil.rmtree(ctx.state_dir, ignore_errors=True)
        assert down.returncode == 0, down.stderr


def test_the_wheel_carries_relctl_and_nothing_of_the_samples(user: UserRepo) -> None:
    wheel = next((WORK / "dist").glob("relctl-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        assert "controller/playbooks/relctl_agent.yml" in names
        assert "controller/playbooks/templates/haproxy.cfg.j2" in names
        code = [n for n in names if n.startswith("controller/")]
        assert [n for n in code if b"ledger" in archive.read(n).lower()] == []
    version = user.run("--version")
    assert version.returncode == 0 and __version__ in version.stdout


def test_init_writes_starter_files_that_plan_accepts(user: UserRepo) -> None:
    init = user.run(
        "init", "--service", "notes", "--port", "9090",
        "--playbook", "playbooks/notes_deploy.yml",
        "--artifact-root", "/opt/notes", "--artifact", "build/notes-1.0.0.tar.gz",
        "--config", "/etc/notes/notes.conf", "--data", "/var/lib/notes/notes.db",
        "--start", "/opt/notes/current/notesctl start",
        "--stop", "/opt/notes/current/notesctl stop",
        "--check", "/opt/notes/current/notesctl status",
        "--version-pointer", "/notes/version")  # notes answers {"notes": {"version": ...}}
    assert init.returncode == 0, init.stderr
    plan = user.run("plan", "relctl/notes-release.yml")
    assert plan.returncode == 0, plan.stderr
    again = user.run("init", "--service", "notes", "--port", "9090",
                     "--playbook", "playbooks/notes_deploy.yml", "--config", "/etc/notes/x")
    assert again.returncode == 2 and "--force" in again.stderr


def _manifest(user: UserRepo, version: str, **extravars: object) -> Path:
    """The starter manifest edited for ``version``, as its user would for each release."""
    doc = yaml.safe_load((user.repo / "relctl" / "notes-release.yml").read_text())
    doc["release"], doc["version"] = f"notes-{version}", version
    for item in doc["items"]:
        if item["kind"] == "artifact":
            item["source"] = f"../build/notes-{version}.tar.gz"
    doc["extravars"] = {"notes_version": version,
                        "notes_artifacts": str(user.repo / "build"), **extravars}
    for gate in doc["gates"]["testinfra"]:
        gate["env"]["EXPECTED_VERSION"] = version
    doc["gates"]["locust"]["duration_s"] = 3  # still a load gate, a third of the wait
    path = user.repo / "relctl" / f"notes-{version}.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _served(user: UserRepo) -> str:
    with urllib.request.urlopen(f"{user.lab_status()['url']}/version", timeout=5) as answer:
        return str(json.load(answer)["notes"]["version"])


def _digests(user: UserRepo) -> dict[tuple[str, str], str]:
    status = user.lab_status()
    cfg = Path(status["ansible_cfg"])
    hosts = [h["name"] for h in status["hosts"] if h["group"] == "app_primary"]
    return {(host, item): hashlib.sha256(shell(cfg, host, command).encode()).hexdigest()
            for host in hosts for item, command in ITEM_DIGESTS.items()}


def test_two_releases_then_a_broken_one_rolled_back_byte_exact(user: UserRepo) -> None:
    for version in VERSIONS[:2]:
        applied = user.run("apply", str(_manifest(user, version)), "--yes")
        assert applied.returncode == 0, applied.stdout[-3000:] + applied.stderr[-3000:]
        assert _served(user) == version
    url = user.lab_status()["url"]
    note = urllib.request.Request(f"{url}/notes/release-day", data=b"kept", method="PUT")
    with urllib.request.urlopen(note, timeout=5) as answer:
        assert answer.status == 201
    before = _digests(user)
    broken = user.run("apply", str(_manifest(user, "1.2.0", notes_port=9091)), "--yes")
    assert broken.returncode == 3, broken.stdout[-3000:] + broken.stderr[-3000:]
    assert _digests(user) == before
    assert _served(user) == "1.1.0"
    with urllib.request.urlopen(f"{url}/notes/release-day", timeout=5) as answer:
        assert json.load(answer)["body"] == "kept"


def test_a_service_crash_drill_on_the_second_service(user: UserRepo) -> None:
    """The continuity plan `relctl init` wrote, edited as its user would: the service's
    pid file for service-crash, no data to replicate (the backup site is cold). The
    service is killed through Ansible by its pid, the LB moves to primary-2, the plan's
    restart command (notesctl start) brings it back, and primary-1 serves again."""
    plan = user.repo / "relctl" / "notes-continuity.yml"
    doc = yaml.safe_load(plan.read_text())
    assert doc["drills"] == "allowed"  # init: a lab environment may be drilled
    doc["drill"]["pid_file"] = "/run/notes/notes.pid"
    doc["data"] = []
    edited = user.repo / "relctl" / "notes-drill.yml"
    edited.write_text(yaml.safe_dump(doc, sort_keys=False))
    dry = user.run("drill", "service-crash", "--plan", str(edited), "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert [f["channel"] for f in json.loads(dry.stdout)["faults"]] == ["pid-file"]

    done = user.run("drill", "service-crash", "--plan", str(edited), "--json")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(done.stdout)["figures"]
    assert report["verdict"] == "pass" and report["measures"]["served_by_after"] == ["primary-2"]
    assert any("restart command" in what for _, what in report["timeline"])
    with urllib.request.urlopen(f"{user.lab_status()['url']}/version", timeout=5) as answer:
        assert answer.headers["X-Served-By"] == "primary-1"
        assert json.load(answer)["notes"]["version"] == "1.1.0"


def test_litestream_streams_the_second_service(user: UserRepo, tmp_path: Path) -> None:
    """The plan `relctl init` wrote, its data item given a Litestream replica on the lab's
    shared storage: relctl replicate starts the litestream relctl's wheel brought, and a
    note written a moment later is in the replica (read back with that litestream)."""
    doc = yaml.safe_load((user.repo / "relctl" / "notes-continuity.yml").read_text())
    doc["data"][0]["litestream"] = {"replica": {"type": "file", "path": "/mnt/ls/notes"}}
    plan = user.repo / "relctl" / "notes-litestream.yml"
    plan.write_text(yaml.safe_dump(doc, sort_keys=False))
    started = user.run("replicate", "--plan", str(plan), "--json")
    assert started.returncode == 0, started.stdout[-3000:] + started.stderr[-3000:]
    assert json.loads(started.stdout)["detail"]["running"]
    url = user.lab_status()["url"]
    note = urllib.request.Request(f"{url}/notes/streamed", data=b"by litestream", method="PUT")
    with urllib.request.urlopen(note, timeout=5) as answer:
        assert answer.status == 201
    time.sleep(2.5)  # Litestream ships every second
    restored = tmp_path / "notes.db"
    subprocess.run([str(user.relctl.parent / "litestream"), "restore", "-o", str(restored),
                    f"file://{user.state_dir / 'lab' / 'shared' / 'ls' / 'notes'}"],
                   check=True, capture_output=True, timeout=60)
    conn = sqlite3.connect(restored)
    try:
        assert any("by litestream" in line for line in conn.iterdump())
    finally:
        conn.close()
    stopped = user.run("replicate", "--plan", str(plan), "--stop", "--json")
    assert stopped.returncode == 0, stopped.stderr


def _continuity(user: UserRepo, command: str) -> dict[str, Any]:
    confirm = ["--yes"] if command in ("failover", "failback") else []
    done = user.run(command, "--plan", "relctl/notes-continuity.yml", *confirm, "--json")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_the_second_service_fails_over_to_a_cold_backup_site_and_back(user: UserRepo) -> None:
    """The plan `relctl init` wrote, unedited: notes reports its version nested
    ({"notes": {"version": ...}}, read with --version-pointer /notes/version). The backup
    site has never run notes: the failover deploys the last good release there (the
    same play as the release), loads the replicated notes and switches the LB; the
    failback brings primary-1 back. A second failover finds the backup on the right
    version and deploys nothing."""
    url = user.lab_status()["url"]
    note = urllib.request.Request(f"{url}/notes/before-the-loss", data=b"replicated",
                                  method="PUT")
    with urllib.request.urlopen(note, timeout=5) as answer:
        assert answer.status == 201
    assert _continuity(user, "replicate")["state"] == "ok"
    backup = {h["name"]: h["address"] for h in user.lab_status()["hosts"]}["backup-1"]
    with pytest.raises(OSError):  # cold: nothing answers on the backup host
        urllib.request.urlopen(f"http://{backup}:9090/health", timeout=2)

    cold = _continuity(user, "failover")
    assert any("deploying notes-1.1.0 on backup-1" in what for _, what in cold["timeline"])
    with urllib.request.urlopen(f"{url}/version", timeout=5) as answer:
        assert answer.headers["X-Served-By"] == "backup-1"
        assert json.load(answer)["notes"]["version"] == "1.1.0"
    with urllib.request.urlopen(f"{url}/notes/before-the-loss", timeout=5) as answer:
        assert json.load(answer)["body"] == "replicated"
    _continuity(user, "failback")
    assert _served_by(user) == "primary-1"

    warm = _continuity(user, "failover")
    assert not any("deploying" in what for _, what in warm["timeline"]), warm["timeline"]
    assert any("backup site healthy on 1.1.0" in what for _, what in warm["timeline"])
    assert _served_by(user) == "backup-1"
    _continuity(user, "failback")
    assert _served_by(user) == "primary-1"


def _served_by(user: UserRepo) -> str:
    with urllib.request.urlopen(f"{user.lab_status()['url']}/health", timeout=5) as answer:
        return str(answer.headers["X-Served-By"])
