"""Rollback on 10 lab hosts: relctl's failed gate -> fleet restored and verified, next to an
ansistrano-style symlink rollback by ``ansible-playbook`` on the same hosts.

1. ledger 1.0.0 (plain deploy), then ``relctl apply`` 1.1.0 (one batch over every host, no
   load gate); store size after this first snapshot.
2. The ansistrano-style rollback, timed: ``ansible-playbook`` switches ``current`` to the
   previous release and restarts the service (ansistrano's rollback with its restart
   hook), with the lab's tuned ansible.cfg (pipelining, ControlPersist, one fork per
   host). Then the same playbook rolls forward to 1.1.0 again (not timed).
3. ``relctl apply`` 1.2.0 with the agent reached through one Ansible task per host
   (``RELCTL_AGENT_TRANSPORT=ansible``) and 2.0.0 over ssh: snapshot seconds of each.
4. ``relctl apply`` 2.0.1 (broken: its testinfra gate fails): the journal's rollback
   phase (restore + the agent's verification, one run per host) and the testinfra checks
   of the restored hosts; testinfra gate seconds; store size after 5 releases.

Run: .venv/bin/python bench/rollback.py [HOSTS]   (default 10; lab at 127.0.61.10)
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _lab import LEDGER, ROOT, deploy_ledger, relctl, timed

from controller.paths import tools_path

ANSISTRANO = """---
- name: Roll back to the previous release (ansistrano-style)
  hosts: app_primary
  gather_facts: false
  vars:
    root: /srv/ledger
  tasks:
    - name: List the releases
      ansible.builtin.find:
        paths: "{{ root }}/releases"
        file_type: directory
      register: releases
    - name: Read the current release
      ansible.builtin.stat:
        path: "{{ root }}/current"
      register: current
    - name: Switch current to the release before it
      ansible.builtin.file:
        src: "{{ (releases.files | map(attribute='path') | sort)[(releases.files
               | map(attribute='path') | sort).index(current.stat.lnk_source) - 1]
               if to is not defined else root ~ '/releases/' ~ to }}"
        dest: "{{ root }}/current"
        state: link
    - name: Restart the service (ansistrano's after-symlink hook)
      ansible.builtin.command:
        argv: ["{{ root }}/current/bin/ledgerctl", restart, --config, /etc/ledger/ledger.conf]
      changed_when: true
"""


def state_dir() -> Path:
    path = Path("/var/tmp/relctl-snap-bench")
    subprocess.run(["rm", "-rf", str(path)], check=True)
    path.mkdir(parents=True)
    return path


def manifest(state: Path, version: str, hosts: int, testinfra: bool) -> Path:
    """The example manifest as one batch over every host, without the Locust gate."""
    text = (ROOT / "examples" / "releases" / f"ledger-{version}.yml").read_text()
    text = text.replace("  canary: 1\n", f"  canary: {hosts}\n").replace("../../", f"{ROOT}/")
    head, tail = text.split("gates:", 1)
    gates = tail.split("  locust:")[0] if testinfra else "\n  testinfra: []\n"
    path = state / f"bench-{version}.yml"
    path.write_text(head + "gates:" + gates + "owners:" + tail.split("owners:")[1])
    return path


def apply(state: Path, version: str, hosts: int, testinfra: bool = False,
          transport: str = "auto") -> dict[str, Any]:
    env = {**os.environ, "RELCTL_AGENT_TRANSPORT": transport}
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "controller", "--state-dir", str(state),
                             "apply", str(manifest(state, version, hosts, testinfra)), "--yes",
                             "--json"], capture_output=True, text=True, cwd=ROOT, env=env,
                            check=False)
    if result.returncode not in (0, 3):
        raise SystemExit(f"apply {version} failed:\n{result.stderr[-3000:]}")
    return {**relctl(state, "show", f"ledger-{version}"), "took": time.monotonic() - started}


def seconds(shown: dict[str, Any], *prefixes: str) -> float:
    return sum(p["seconds"] or 0 for p in shown["phases"] if str(p["name"]).startswith(prefixes))


def ansistrano(state: Path, to: str | None = None) -> None:
    playbook = state / "ansistrano_rollback.yml"
    playbook.write_text(ANSISTRANO)
    env = {**os.environ, "ANSIBLE_CONFIG": str(state / "lab" / "ansible.cfg"),
           "PATH": tools_path()}
    extra = ["-e", f"to={to}"] if to else []
    subprocess.run(["ansible-playbook", str(playbook), *extra], env=env, check=True,
                   capture_output=True)


def store_bytes(state: Path) -> int:
    objects = state / "snapshots" / "objects"
    return sum(p.stat().st_size for p in objects.rglob("*") if p.is_file())


def main() -> None:
    hosts = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    state = state_dir()
    relctl(state, "lab", "up", "--primary", str(hosts), "--backup", "0",
           "--base-address", "127.0.61.10", *LEDGER)
    try:
        deploy_ledger(state, "1.0.0")
        first = apply(state, "1.1.0", hosts)
        size_1 = store_bytes(state)
        print(f"store after 1 release: {size_1} bytes", flush=True)
        yardstick, _ = timed(ansistrano, state)
        print(f"ansistrano-style rollback: {yardstick:.2f} s", flush=True)
        ansistrano(state, "1.1.0")
        by_ansible = apply(state, "1.2.0", hosts, transport="ansible")
        by_ssh = apply(state, "2.0.0", hosts)
        failed = apply(state, "2.0.1", hosts, testinfra=True)
        size_5 = store_bytes(state)
    finally:
        relctl(state, "lab", "down")
    restore = seconds(failed, "rollback")
    checks = seconds(failed, "gate:testinfra:restored")
    print(f"rollback on {hosts} lab hosts ({failed['state']})")
    print(f"  ansistrano-style rollback, ansible-playbook      {yardstick:7.2f} s")
    print(f"  relctl restore + verify (one agent run per host) {restore:7.2f} s  "
          f"(ratio {restore / yardstick:.2f})")
    print(f"  relctl testinfra on the restored hosts           {checks:7.2f} s")
    print(f"  failed gate -> restored and verified             {restore + checks:7.2f} s  "
          f"(ratio {(restore + checks) / yardstick:.2f})")
    print(f"  snapshot, first (ssh, Ansible resolves settings) {seconds(first, 'snapshot'):7.2f} s")
    print(f"  snapshot, one Ansible task per host              "
          f"{seconds(by_ansible, 'snapshot'):7.2f} s")
    print(f"  snapshot, ssh over ControlPersist                "
          f"{seconds(by_ssh, 'snapshot'):7.2f} s")
    print(f"  testinfra gate (2.0.1 canary, {hosts} hosts)           "
          f"{seconds(failed, 'gate:testinfra:canary'):7.2f} s")
    playbooks = seconds(by_ssh, "apply:")
    print(f"  release 2.0.0 (no load gate): {by_ssh['took']:.2f} s in all, the playbooks "
          f"{playbooks:.2f} s, relctl's own time {by_ssh['took'] - playbooks:.2f} s")
    print(f"  store after 1 release  {size_1 / 1024:8.1f} KiB")
    print(f"  store after 5 releases {size_5 / 1024:8.1f} KiB  (ratio {size_5 / size_1:.2f})")


if __name__ == "__main__":
    main()
