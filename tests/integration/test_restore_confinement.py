"""Restores confined to their items on the real lab (issue 25; its own addresses,
127.0.86.10-19):

- a service user who owns the item's folder links the old restore's temporary name, and
  the item itself, to a root-owned file during a release that fails: after the rollback
  root's file is unchanged and the item is a regular file with the snapshot's bytes;
- an artifact whose ``current`` link leads out of its root is refused at the snapshot:
  exit 2, the item and the link named, no playbook run.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.ansible_cli import shell
from tests.integration.conftest import RunningLab, start_lab, stop_lab
from tests.relctl_cli import relctl

pytestmark = pytest.mark.lab

SERVICE_USER = "relctl-svc"
VICTIM = "/etc/relctl-victim"
PLAYBOOK = """\
- hosts: all
  gather_facts: false
  tasks:
    - name: The service's config folder, owned by the service user
      ansible.builtin.file: {path: /srv/svcu, state: directory, owner: relctl-svc,
                             mode: "0755"}
    - name: The config of this version (root's)
      ansible.builtin.copy:
        dest: /srv/svcu/svc.conf
        content: "version={{ svc_version }}\\n"
        owner: root
        mode: "0644"
"""
# The release that fails, while the service user plants its links in the folder it owns.
ATTACK = PLAYBOOK + """\
    - name: The service user links the restore's old temporary name and the item to root's file
      ansible.builtin.shell: >-
        runuser -u relctl-svc -- sh -c 'ln -s /etc/relctl-victim /srv/svcu/.svc.conf.relctl-restore
        && ln -sfn /etc/relctl-victim /srv/svcu/svc.conf'
    - name: Then the release breaks
      ansible.builtin.fail: {msg: "broken on purpose"}
"""
MANIFEST = """\
release: svcu-{version}
version: "{version}"
service: svcu
environment: lab
targets: app_primary
items:
  - {{kind: file, name: svcu-config, path: /srv/svcu/svc.conf}}
playbooks:
  apply: [{playbook}]
extravars: {{svc_version: "{version}"}}
owners:
  release_manager: Ada Ops
"""
ARTIFACT = """\
release: art-1
version: "1"
service: art
environment: lab
targets: app_primary
items:
  - {{kind: artifact, name: art-code, root: /srv/art, source: {source}}}
playbooks:
  apply: [touch.yml]
owners:
  release_manager: Ada Ops
"""
TOUCH = """\
- hosts: all
  gather_facts: false
  tasks:
    - ansible.builtin.file: {path: /srv/art-touched, state: touch}
"""


@pytest.fixture(scope="module")
def lab() -> Iterator[RunningLab]:
    running = start_lab(primary=1, backup=0, base_address="127.0.86.10")
    try:
        yield running
    finally:
        stop_lab(running)


def on_host(lab: RunningLab, command: str) -> str:
    return shell(lab.ansible_cfg, lab.hosts("app_primary")[0]["name"], command)


@pytest.fixture(scope="module")
def repo(lab: RunningLab, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The service's repository; its user and root's file on the host."""
    repo = tmp_path_factory.mktemp("svcu-repo")
    (repo / "site.yml").write_text(PLAYBOOK)
    (repo / "attack.yml").write_text(ATTACK)
    (repo / "svcu-1.yml").write_text(MANIFEST.format(version="1", playbook="site.yml"))
    (repo / "svcu-2.yml").write_text(MANIFEST.format(version="2", playbook="attack.yml"))
    on_host(lab, f"id {SERVICE_USER} || useradd --system --no-create-home {SERVICE_USER}")
    on_host(lab, f"printf 'root only\\n' > {VICTIM} && chmod 0600 {VICTIM}")
    return repo


def test_links_the_service_user_plants_do_not_redirect_the_rollback(
        lab: RunningLab, repo: Path) -> None:
    first = relctl(lab.state_dir, "apply", str(repo / "svcu-1.yml"), "--yes", "--json")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr
    broken = relctl(lab.state_dir, "apply", str(repo / "svcu-2.yml"), "--yes", "--json")
    assert broken.returncode == 3, broken.stdout[-3000:] + broken.stderr
    outcome = json.loads(broken.stdout)
    assert outcome["state"] == "rolled_back", outcome
    # root's file: its bytes, owner and mode as they were
    assert on_host(lab, f"stat -c '%U %a' {VICTIM}; cat {VICTIM}") == "root 600\nroot only"
    # the item: a regular file again, with the snapshot's bytes, owner and mode
    assert on_host(lab, "stat -c '%F %U %a' /srv/svcu/svc.conf; cat /srv/svcu/svc.conf") == (
        "regular file root 644\nversion=1")


def test_a_current_link_out_of_the_artifact_root_is_refused_with_exit_2(
        lab: RunningLab, repo: Path) -> None:
    source = repo / "art-1.tar.gz"
    with tarfile.open(source, "w:gz"):
        pass
    (repo / "touch.yml").write_text(TOUCH)
    (repo / "art-1.yml").write_text(ARTIFACT.format(source=source))
    on_host(lab, "mkdir -p /srv/art/releases && ln -sfn /etc /srv/art/current "
                 "&& rm -f /srv/art-touched")
    result = relctl(lab.state_dir, "apply", str(repo / "art-1.yml"), "--yes", "--json")
    assert result.returncode == 2, result.stdout[-3000:] + result.stderr
    said = result.stdout + result.stderr
    assert "art-code" in said and "/srv/art/current -> /etc" in said, said
    assert "outside the artifact root" in said
    assert on_host(lab, "test -e /srv/art-touched && echo touched || echo untouched") == (
        "untouched")
