"""The staging lab: real isolated hosts that Ansible reaches, and nothing left behind."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

from controller.engine.environment import Environment
from controller.planning.lab import HOST_BASHRC
from tests.integration.ansible_cli import ad_hoc, shell
from tests.integration.conftest import (
    RunningLab,
    new_state_dir,
    session_lab_address,
    start_lab,
    stop_lab,
)
from tests.relctl_cli import LEDGER_SERVICE, relctl, relctl_json

pytestmark = pytest.mark.lab
# Trees a service writes to; on a lab host each is its own.
ISOLATED_TREES = ("/etc", "/opt", "/var/lib", "/var/log", "/home", "/root", "/usr/local",
                  "/srv", "/tmp", "/run")


def test_ansible_reaches_every_host(lab: RunningLab) -> None:
    results = ad_hoc(lab.ansible_cfg, "all", "ansible.builtin.ping")
    assert sorted(results) == sorted(h["name"] for h in lab.hosts())
    assert all(res.get("ping") == "pong" for res in results.values()), results


def test_hosts_have_own_hostname_and_processes(lab: RunningLab) -> None:
    first, second = (h["name"] for h in lab.hosts("app_primary"))
    assert shell(lab.ansible_cfg, first, "hostname") == first
    assert shell(lab.ansible_cfg, second, "hostname") == second
    pid_one = shell(lab.ansible_cfg, first, "cat /proc/1/comm; ps -e -o pid= | wc -l")
    comm, count = pid_one.split()
    assert comm == "sshd"
    assert int(count) < 20, "ps on a lab host must show only that host's processes"


def test_what_a_host_writes_stays_on_that_host(lab: RunningLab) -> None:
    first, second = (h["name"] for h in lab.hosts("app_primary"))
    probe = f"relctl-isolation-{uuid.uuid4().hex[:8]}"
    paths = [f"{tree}/{probe}" for tree in ISOLATED_TREES]
    shell(lab.ansible_cfg, first, "; ".join(f"echo {first} > {p}" for p in paths))
    try:
        assert shell(lab.ansible_cfg, first, f"cat {' '.join(paths)}").split() == (
            [first] * len(paths))
        on_second = shell(lab.ansible_cfg, second, f"ls -d {' '.join(paths)} 2>&1; true")
        assert on_second.count("No such file") == len(paths), on_second
        assert [p for p in paths if Path(p).exists()] == [], "leaked onto the machine"
    finally:
        shell(lab.ansible_cfg, first, f"rm -f {' '.join(paths)}")


def test_a_hosts_root_starts_its_shell_as_a_fresh_server(lab: RunningLab) -> None:
    # The controller's ~/.bashrc (a pyenv, a banner) is not run before each Ansible task.
    host = lab.hosts("app_primary")[0]["name"]
    assert shell(lab.ansible_cfg, host, "cat /root/.bashrc") == HOST_BASHRC.strip()


def test_hosts_see_the_machines_installed_software(lab: RunningLab) -> None:
    host = lab.hosts("app_primary")[0]["name"]
    seen = shell(lab.ansible_cfg, host, "cat /etc/debian_version; ls /usr/lib/python3*/ | head -1")
    assert seen.splitlines()[0] == Path("/etc/debian_version").read_text().strip()


def test_up_creates_what_sshd_needs_on_a_fresh_machine() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    if _machine_sshd_runs():
        pytest.skip("a system sshd runs on this machine: /run/sshd is in use, not removed")
    shutil.rmtree("/run/sshd", ignore_errors=True)  # as on a machine where sshd never ran
    running = start_lab(primary=1, backup=0, base_address="127.0.9.50")
    try:
        assert all(h["sshd_answers"] for h in running.hosts())
        assert not Path("/run/sshd").exists(), "each host makes its own /run/sshd"
    finally:
        stop_lab(running)


def _machine_sshd_runs() -> bool:
    """An sshd in this machine's PID namespace (lab hosts' sshd run in their own)."""
    ours = os.readlink("/proc/self/ns/pid")
    for proc in psutil.process_iter(["name"]):
        with contextlib.suppress(psutil.Error, OSError):
            if proc.info["name"] == "sshd" and os.readlink(f"/proc/{proc.pid}/ns/pid") == ours:
                return True
    return False


def _mount_namespaces(pids: list[int]) -> set[str]:
    found = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            found.add(os.readlink(f"/proc/{pid}/ns/mnt"))
    return found


def test_status_json_names_inventory_url_and_backends(lab: RunningLab) -> None:
    status = relctl_json(lab.state_dir, "lab", "status")
    assert Path(status["inventory"]).is_file()
    url = f"http://{session_lab_address()}:8000"
    assert status["url"] == url
    assert status["services"][0] == {
        "name": "ledger", "port": 8000, "url": url, "host_port": 8080,
        "health_path": "/health", "balance": "first"}
    assert all(h["sshd_answers"] for h in status["hosts"])
    servers = {(b["server"], b["backup"]) for b in status["backends"]}
    assert servers == {("primary-1", False), ("primary-2", False), ("backup-1", True)}


def test_up_twice_keeps_the_healthy_lab(lab: RunningLab) -> None:
    before = {h["name"]: h["pid"] for h in lab.hosts()}
    again = relctl(lab.state_dir, "lab", "up", "--primary", "2", "--backup", "1",
                   "--base-address", session_lab_address(), "--service", LEDGER_SERVICE, "--json")
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert report["started"] == [] and sorted(report["kept"]) == sorted(before)
    after = relctl_json(lab.state_dir, "lab", "status")
    assert {h["name"]: h["pid"] for h in after["hosts"]} == before


def test_a_run_that_ends_lets_another_runs_task_finish(lab: RunningLab) -> None:
    """Two relctl runs against one lab share its ssh masters: the one that ends first
    closes them gracefully, so the other's task in flight finishes (it was cut with
    exit 255), and no master is left once it has."""
    control = lab.state_dir / "lab" / "cp"
    with ThreadPoolExecutor(1) as pool:
        task = pool.submit(shell, lab.ansible_cfg, "primary-1", "sleep 3; echo finished")
        time.sleep(1)
        masters = [p for p in psutil.process_iter(["cmdline"])
                   if str(control) in " ".join(p.info["cmdline"] or []) and "[mux]" in
                   " ".join(p.info["cmdline"] or [])]
        Environment(lab.state_dir, lab.inventory, lab.ansible_cfg, None).close_connections()
        assert task.result(timeout=30) == "finished"
    assert masters, "no ssh master to close"
    assert psutil.wait_procs(masters, timeout=5)[1] == []
    assert not any(control.iterdir())


def test_down_leaves_no_process_running() -> None:
    running = start_lab(primary=1, backup=1, base_address="127.0.9.40")
    try:
        # Something running inside a host dies with it: start a sleeper on a host.
        shell(running.ansible_cfg, "primary-1", "nohup sleep 600 >/dev/null 2>&1 &")
        pids = running.lab_pids()
        host_namespaces = _mount_namespaces([h["pid"] for h in running.hosts()])
        control = running.state_dir / "lab" / "cp"
        masters = list(control.iterdir())
    finally:
        stop_lab(running)
    assert len(pids) >= 7
    assert len(host_namespaces) == len(running.hosts())
    assert masters, "ansible left no ControlPersist master to close"
    alive = [p for p in pids if psutil.pid_exists(p)
             and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert alive == []
    assert not control.exists() or not any(control.iterdir())
    # A mount namespace, and every overlay in it, ends with its last process.
    assert host_namespaces & _mount_namespaces(psutil.pids()) == set()
    assert "relctl-lab" not in Path("/proc/self/mountinfo").read_text()


def test_address_already_taken_is_a_clear_error() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    state_dir = new_state_dir()
    with socket.socket() as squatter:
        squatter.bind(("127.0.9.221", 2222))
        squatter.listen()
        result = relctl(state_dir, "lab", "up", "--primary", "1", "--backup", "0",
                        "--base-address", "127.0.9.220")
    relctl(state_dir, "lab", "down")
    shutil.rmtree(state_dir, ignore_errors=True)
    assert result.returncode == 7
    assert "127.0.9.221:2222 is already in use" in result.stderr


def test_missing_haproxy_is_named_with_its_package(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("unshare", "ssh", "ssh-keygen", "sh", "true"):
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    state_dir = new_state_dir()
    result = relctl(state_dir, "lab", "up", env={"PATH": str(bin_dir)})
    shutil.rmtree(state_dir, ignore_errors=True)
    assert result.returncode == 6, result.stderr
    assert "haproxy is not installed" in result.stderr
    assert "apt-get install haproxy" in result.stderr
    assert not (state_dir / "lab" / "lab.json").exists()


def test_state_dir_under_tmp_is_refused(tmp_path: Path) -> None:
    result = relctl(tmp_path, "lab", "up")
    assert result.returncode == 2
    assert "under /tmp" in result.stderr
