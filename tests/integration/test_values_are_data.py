"""Manifest values are data, secrets stay out of command lines and run artifacts, and the
user's host key settings win (issue 25, items 3, 5 and 6), with real ansible-playbook runs:

- a ``lookup('pipe', ...)`` template in an extravar runs nothing, and the task gets the
  text as written: through ``run_playbook`` (``connection: local``, no network), and
  through ``relctl apply --dry-run`` and ``relctl apply`` on the lab (its own addresses,
  127.0.88.10-11);
- while a playbook runs, no extravar value is on any command line; after it, nothing
  under the run's folder holds a secret of the controller's environment, and the
  playbook could still read it (``lookup('env', ...)``, as a ``password_env`` needs);
- with ``host_key_checking = True`` in ansible.cfg, ansible-playbook's environment does
  not turn it off, and the lab (which pins its own host keys) still works.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from controller.adapters.ansible import PlaybookResult, PlaybookRun, run_playbook
from controller.adapters.connections import resolve_connections
from controller.adapters.ssh import close_control_masters
from tests.integration.ansible_cli import shell
from tests.integration.conftest import RunningLab, start_lab, stop_lab
from tests.relctl_cli import relctl

SECRET = "s3cr3t-value-of-the-controller"
JOURNAL = "postgresql://relctl:j0urnal-secret@127.0.0.1:5432/relctl"
EXTRAVAR_SECRET = "db-pw-in-extravars-7f3a"


def pipe_template(marker: Path, version: str = "1.0.0") -> str:
    """What issue 25 reproduced: a template that runs a command on the controller."""
    return "{{ lookup('pipe', 'id > " + str(marker) + "; echo " + version + "') }}"


LOCAL_PLAYBOOK = """\
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: What the task sees of the variables and of the settings
      ansible.builtin.copy:
        dest: "{{ out }}"
        content: "{{ {'app_version': app_version, 'nested': nested[0].inner,
                      'env_hkc': lookup('ansible.builtin.env', 'ANSIBLE_HOST_KEY_CHECKING'),
                      'config_hkc': lookup('ansible.builtin.config', 'HOST_KEY_CHECKING'),
                      'secret_readable': lookup('ansible.builtin.env', 'VAD_DB_PASSWORD')
                                         | hash('sha1') == secret_sha1} | to_json }}"
        mode: "0600"
    - name: A while, so the test sees the command lines
      ansible.builtin.command: sleep 2
      changed_when: false
"""


@pytest.fixture
def local_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PlaybookRun]:
    """A playbook on this machine (``connection: local``), a cfg with host key checking
    on, a secret and a journal URL in the controller's environment."""
    monkeypatch.setenv("VAD_DB_PASSWORD", SECRET)
    monkeypatch.setenv("RELCTL_JOURNAL", JOURNAL)
    monkeypatch.delenv("ANSIBLE_HOST_KEY_CHECKING", raising=False)
    (tmp_path / "site.yml").write_text(LOCAL_PLAYBOOK)
    (tmp_path / "ansible.cfg").write_text(
        "[defaults]\nhost_key_checking = True\nretry_files_enabled = False\n")
    (tmp_path / "hosts").write_text(
        f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    yield PlaybookRun(
        playbook=tmp_path / "site.yml", inventory=tmp_path / "hosts",
        ansible_cfg=tmp_path / "ansible.cfg", runs_dir=tmp_path / "runs",
        extravars={"app_version": pipe_template(tmp_path / "marker"),
                   "nested": [{"inner": "{{ 6 * 7 }}"}],
                   "db_password": EXTRAVAR_SECRET,
                   "out": str(tmp_path / "seen.json"),
                   "secret_sha1": hashlib.sha1(SECRET.encode()).hexdigest()})


def run_watching_command_lines(run: PlaybookRun) -> tuple[PlaybookResult, list[list[str]]]:
    """Run ``run``; meanwhile, every command line that names its playbook."""
    result: list[PlaybookResult] = []
    worker = threading.Thread(target=lambda: result.append(run_playbook(run)))
    worker.start()
    seen: list[list[str]] = []
    while worker.is_alive():
        for proc in psutil.process_iter(["cmdline"]):
            cmdline = proc.info["cmdline"] or []
            if str(run.playbook) in cmdline and cmdline not in seen:
                seen.append(cmdline)
        time.sleep(0.05)
    worker.join()
    return result[0], seen


def test_an_extravar_template_runs_nothing_and_reaches_the_task_as_text(
        local_run: PlaybookRun, tmp_path: Path) -> None:
    result = run_playbook(local_run)
    assert result.succeeded, result.status
    assert not (tmp_path / "marker").exists()  # `id` never ran on the controller
    seen = json.loads((tmp_path / "seen.json").read_text())
    assert seen["app_version"] == local_run.extravars["app_version"]
    assert seen["nested"] == "{{ 6 * 7 }}"


def test_dry_run_check_mode_runs_nothing_either(local_run: PlaybookRun, tmp_path: Path) -> None:
    run = dataclasses.replace(local_run, check=True)
    result = run_playbook(run)
    assert result.succeeded, result.status
    assert not (tmp_path / "marker").exists()


def test_no_secret_on_a_command_line_or_in_the_run_artifacts(local_run: PlaybookRun) -> None:
    result, command_lines = run_watching_command_lines(local_run)
    assert result.succeeded, result.status
    assert any("ansible-playbook" in " ".join(c) for c in command_lines), command_lines
    for cmdline in command_lines:
        text = " ".join(cmdline)
        assert EXTRAVAR_SECRET not in text and "lookup" not in text, text
    leaks = [path for path in local_run.runs_dir.rglob("*") if path.is_file() and any(
        secret in path.read_text(errors="replace")
        for secret in (SECRET, JOURNAL, "j0urnal-secret", EXTRAVAR_SECRET))]
    assert leaks == []
    command = json.loads((result.artifact_dir / "command").read_text())
    assert "VAD_DB_PASSWORD" in command["env"]  # named, its value not kept
    assert command["env"]["ANSIBLE_CONFIG"] == str(local_run.ansible_cfg)
    seen = json.loads(Path(local_run.extravars["out"]).read_text())
    assert seen["secret_readable"] is True  # a playbook's password_env still works


def test_host_key_checking_of_the_ansible_cfg_is_not_turned_off(local_run: PlaybookRun) -> None:
    assert run_playbook(local_run).succeeded
    seen = json.loads(Path(local_run.extravars["out"]).read_text())
    assert seen["env_hkc"] == ""  # ansible-runner's ANSIBLE_HOST_KEY_CHECKING=False is gone
    assert seen["config_hkc"] is True


def test_the_lean_ssh_transport_keeps_host_key_checking(local_run: PlaybookRun,
                                                        tmp_path: Path) -> None:
    inventory = tmp_path / "ssh-hosts"
    inventory.write_text("web ansible_host=127.0.88.19 ansible_user=root\n")
    found = resolve_connections(inventory, local_run.ansible_cfg, ["web"], None)
    argv = " ".join(found["web"].argv)
    assert "StrictHostKeyChecking=no" not in argv, argv


# -- on the lab: relctl apply --dry-run and relctl apply --------------------------------

LAB_PLAYBOOK = """\
- hosts: all
  gather_facts: false
  tasks:
    - name: The config folder
      ansible.builtin.file: {path: /etc/vad, state: directory, mode: "0755"}
    - name: The config file, naming the version
      ansible.builtin.copy:
        dest: /etc/vad/vad.conf
        content: "version={{ vad_version }}\\n"
        mode: "0644"
"""
LAB_MANIFEST = """\
release: vad-{version}
version: "{version}"
service: vad
environment: lab
targets: app_primary
items:
  - {{kind: file, name: vad-config, path: /etc/vad/vad.conf}}
playbooks:
  apply: [site.yml]
extravars:
  vad_version: {template}
owners:
  release_manager: Ada Ops
"""


@pytest.fixture(scope="module")
def lab() -> Iterator[RunningLab]:
    running = start_lab(primary=1, backup=0, base_address="127.0.88.10")
    yield running
    stop_lab(running)


@pytest.mark.lab
def test_apply_and_dry_run_on_the_lab_run_no_manifest_template(lab: RunningLab,
                                                               tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    template = pipe_template(marker)
    (tmp_path / "site.yml").write_text(LAB_PLAYBOOK)
    manifest = tmp_path / "vad-1.yml"
    manifest.write_text(LAB_MANIFEST.format(version="1", template=json.dumps(template)))
    dry = relctl(lab.state_dir, "apply", str(manifest), "--dry-run", "--json")
    assert dry.returncode == 0, dry.stdout[-3000:] + dry.stderr
    assert not marker.exists()
    applied = relctl(lab.state_dir, "apply", str(manifest), "--yes", "--json")
    assert applied.returncode == 0, applied.stdout[-3000:] + applied.stderr
    assert not marker.exists()
    host = lab.hosts("app_primary")[0]["name"]
    assert shell(lab.ansible_cfg, host, "cat /etc/vad/vad.conf") == f"version={template}"


@pytest.mark.lab
def test_the_lab_pins_its_host_keys_and_refuses_another(lab: RunningLab) -> None:
    """Host key checking is on for the lab (its ansible.cfg, not turned off): a host
    whose key is not the pinned one is unreachable."""
    host = lab.hosts("app_primary")[0]["name"]
    assert shell(lab.ansible_cfg, host, "echo ok") == "ok"
    known_hosts = lab.state_dir / "lab" / "known_hosts"
    pinned = known_hosts.read_text()
    wrong = tmp_key_line(pinned)
    try:
        known_hosts.write_text(wrong)
        close_control_masters(lab.state_dir / "lab" / "cp")
        run = PlaybookRun(playbook=write_ping(lab.state_dir), inventory=lab.inventory,
                          ansible_cfg=lab.ansible_cfg, runs_dir=lab.state_dir / "vad-runs",
                          limit=host)
        result = run_playbook(run)
        assert result.hosts[host].unreachable, result.hosts
    finally:
        known_hosts.write_text(pinned)
        close_control_masters(lab.state_dir / "lab" / "cp")
    assert shell(lab.ansible_cfg, host, "echo ok") == "ok"


def tmp_key_line(pinned: str) -> str:
    """``pinned`` with every host's key replaced by another (valid) ed25519 key."""
    other = "AAAAC3NzaC1lZDI1NTE5AAAAIBgDH5tvqTl3PqXkO9SRVa0VsGKKcVdPJK9eMBHlXzfu"
    return "".join(f"{line.split()[0]} ssh-ed25519 {other}\n"
                   for line in pinned.splitlines() if line.strip())


def write_ping(folder: Path) -> Path:
    path = folder / "vad-ping.yml"
    path.write_text("- hosts: all\n  gather_facts: false\n  tasks:\n    - ansible.builtin.ping:\n")
    return path

