"""The staging lab: real isolated hosts that Ansible reaches, and nothing left behind."""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

import psutil
import pytest

from tests.integration.ansible_cli import ad_hoc, shell
from tests.integration.conftest import RunningLab, new_state_dir, start_lab, stop_lab
from tests.relctl_cli import relctl, relctl_json

pytestmark = pytest.mark.lab


def test_ansible_reaches_every_host(lab: RunningLab) -> None:
    results = ad_hoc(lab.ansible_cfg, "all", "ansible.builtin.ping")
    assert sorted(results) == sorted(h["name"] for h in lab.hosts())
    assert all(res.get("ping") == "pong" for res in results.values()), results


def test_hosts_have_own_hostname_processes_and_srv(lab: RunningLab) -> None:
    first, second = (h["name"] for h in lab.hosts("app_primary"))
    assert shell(lab.ansible_cfg, first, "hostname") == first
    assert shell(lab.ansible_cfg, second, "hostname") == second
    shell(lab.ansible_cfg, first, "echo written-on-first > /srv/isolation-probe")
    on_second = shell(lab.ansible_cfg, second, "ls -A /srv; ls -A /tmp")
    assert "isolation-probe" not in on_second
    pid_one = shell(lab.ansible_cfg, first, "cat /proc/1/comm; ps -e -o pid= | wc -l")
    comm, count = pid_one.split()
    assert comm == "sshd"
    assert int(count) < 20, "ps on a lab host must show only that host's processes"
    shell(lab.ansible_cfg, first, "rm /srv/isolation-probe")


def test_status_json_names_inventory_url_and_backends(lab: RunningLab) -> None:
    status = relctl_json(lab.state_dir, "lab", "status")
    assert Path(status["inventory"]).is_file()
    assert status["url"].startswith("http://127.0.9.10:")
    assert all(h["sshd_answers"] for h in status["hosts"])
    servers = {(b["server"], b["backup"]) for b in status["backends"]}
    assert servers == {("primary-1", False), ("primary-2", False), ("backup-1", True)}


def test_up_twice_keeps_the_healthy_lab(lab: RunningLab) -> None:
    before = {h["name"]: h["pid"] for h in lab.hosts()}
    again = relctl(lab.state_dir, "lab", "up", "--primary", "2", "--backup", "1",
                   "--base-address", "127.0.9.10", "--json")
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert report["started"] == [] and sorted(report["kept"]) == sorted(before)
    after = relctl_json(lab.state_dir, "lab", "status")
    assert {h["name"]: h["pid"] for h in after["hosts"]} == before


def test_down_leaves_no_process_running() -> None:
    running = start_lab(primary=1, backup=1, base_address="127.0.9.40")
    # Something running inside a host dies with it: start a sleeper on a host.
    shell(running.ansible_cfg, "primary-1", "nohup sleep 600 >/dev/null 2>&1 &")
    pids = running.lab_pids()
    assert len(pids) >= 7
    control = running.state_dir / "lab" / "cp"
    assert any(control.iterdir()), "ansible left no ControlPersist master to close"
    stop_lab(running)
    alive = [p for p in pids if psutil.pid_exists(p)
             and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert alive == []
    assert not control.exists() or not any(control.iterdir())


def test_address_already_taken_is_a_clear_error() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    state_dir = new_state_dir()
    with socket.socket() as squatter:
        squatter.bind(("127.0.9.71", 2222))
        squatter.listen()
        result = relctl(state_dir, "lab", "up", "--primary", "1", "--backup", "0",
                        "--base-address", "127.0.9.70")
    relctl(state_dir, "lab", "down")
    shutil.rmtree(state_dir, ignore_errors=True)
    assert result.returncode == 7
    assert "127.0.9.71:2222 is already in use" in result.stderr


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
