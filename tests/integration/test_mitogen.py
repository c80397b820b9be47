"""``playbooks.strategy: mitogen``: the example's own deploy playbook, unchanged, run by
Mitogen for Ansible's ``mitogen_linear`` strategy through ``relctl apply`` on the session
lab; a second, tiny playbook of the release records what ran its task on the host (a
Mitogen context: its interpreter's command line names it)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.ansible_cli import shell
from tests.integration.conftest import RunningLab
from tests.integration.ledger_http import served_versions
from tests.relctl_cli import ROOT, deploy_ledger, example_text, relctl

pytestmark = pytest.mark.lab
PROBE_FILE = "/var/tmp/relctl-strategy-probe"
PROBE = f"""---
- name: Record the processes that run this task
  hosts: all
  gather_facts: false
  tasks:
    - name: Write the command lines of the task's ancestors
      ansible.builtin.shell: |
        pid=$$; : > {PROBE_FILE}
        for _ in 1 2 3 4 5 6; do
          tr '\\0' ' ' < /proc/$pid/cmdline >> {PROBE_FILE}; echo >> {PROBE_FILE}
          pid=$(awk '{{print $4}}' /proc/$pid/stat); [ "$pid" -gt 1 ] || break
        done
      changed_when: true
"""


def manifest(folder: Path) -> Path:
    data: dict[str, Any] = yaml.safe_load(example_text(ROOT / "examples/releases/"
                                                       "ledger-1.1.0.yml"))
    data["release"] = "ledger-1.1.0-mitogen"
    probe = folder / "probe.yml"
    probe.write_text(PROBE)
    data["playbooks"]["apply"] = [data["playbooks"]["apply"][0], str(probe)]
    data["playbooks"]["strategy"] = "mitogen"
    data["gates"]["locust"] = None  # the playbooks' strategy is under test, not the gate
    path = folder / "mitogen.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_a_release_runs_its_playbooks_unchanged_under_mitogen(lab: RunningLab,
                                                               tmp_path: Path) -> None:
    deployed = deploy_ledger(lab.state_dir, "1.0.0")
    assert deployed.returncode == 0, deployed.stderr
    applied = relctl(lab.state_dir, "apply", str(manifest(tmp_path)), "--yes", "--json")
    assert applied.returncode == 0, applied.stdout[-2000:] + applied.stderr[-3000:]
    assert served_versions(lab) == {"1.1.0"}
    for host in (h["name"] for h in lab.hosts("app_primary")):
        ran_by = shell(lab.ansible_cfg, host, f"cat {PROBE_FILE}; rm -f {PROBE_FILE}")
        # Mitogen names its interpreter on the host (Ansible's own runs /usr/bin/python3)
        assert re.search(r"^/usr/bin/python3\(mitogen:root@", ran_by, re.MULTILINE), ran_by


def test_a_failover_needing_mitogen_is_refused_by_its_preflight_without_it(
        lab: RunningLab, tmp_path: Path) -> None:
    """A failover deploys the last good release with its own strategy: where Mitogen is
    missing (here an ``ansible_mitogen`` without its plugins first on the path, as a
    controller that lost it would find), the preflight says so before any change, rather
    than the deploy failing in the middle of the failover. Runs after the release above."""
    plan = tmp_path / "plan.yml"
    plan.write_text((ROOT / "examples/continuity/ledger-lab.yml").read_text()
                    .replace("../../loadtests", str(ROOT / "loadtests"))
                    .replace('releases: ["../releases/ledger-*.yml"]',
                             f'releases: ["{tmp_path.parent}/*/mitogen.yml"]'))
    hollow = tmp_path / "hollow"
    (hollow / "ansible_mitogen").mkdir(parents=True)
    (hollow / "ansible_mitogen" / "__init__.py").write_text("")
    fine = relctl(lab.state_dir, "drill", "site-loss", "--plan", str(plan), "--dry-run",
                  "--json")
    assert fine.returncode == 0, fine.stdout[-2000:] + fine.stderr[-2000:]
    refused = relctl(lab.state_dir, "drill", "site-loss", "--plan", str(plan), "--dry-run",
                     "--json", env={"PYTHONPATH": str(hollow)})
    assert refused.returncode == 2, refused.stdout[-2000:] + refused.stderr[-2000:]
    assert "refused by its preflight, nothing touched" in refused.stderr, refused.stderr
    assert ("deploy: ledger-1.1.0-mitogen: playbooks.strategy: mitogen needs Mitogen"
            in refused.stderr and "pipx inject relctl mitogen" in refused.stderr), refused.stderr
