"""The release pipeline on 10 lab hosts: apply-phase overhead, rollback time, controller RSS.

1. ledger 1.0.0 -> 1.1.0 with plain ``ansible-playbook`` (same playbook, same ansible.cfg);
   hosts reset to 1.0.0; the same change through ``relctl apply`` (one batch). The
   apply phase's seconds come from relctl's journal.
2. ``relctl apply`` of 2.0.1 (broken): seconds from the failed gate to the fleet restored
   and verified (the journal's rollback and restored-check phases).
3. Peak RSS of the relctl controller process (its children, Ansible and pytest, apart).

Run: .venv/bin/python bench/release_pipeline.py [HOSTS]   (default 10)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import psutil
from _lab import LEDGER, RELCTL, ROOT, deploy_ledger, fresh_state_dir, relctl, timed

from controller.adapters.ssh import close_control_masters
from controller.paths import tools_path

RELEASES = ROOT / "examples" / "releases"


def bench_manifest(state: Path, version: str, hosts: int) -> Path:
    """The example manifest as one batch over every host, without the Locust gate."""
    text = (RELEASES / f"ledger-{version}.yml").read_text()
    text = text.replace("  canary: 1\n", f"  canary: {hosts}\n")
    text = text.split("  locust:")[0] + "owners:" + text.split("owners:")[1]
    text = text.replace("../../", f"{ROOT}/")
    path = state / f"bench-{version}.yml"
    path.write_text(text)
    return path


def ansible_playbook(lab: Path, version: str) -> None:
    env = {**os.environ, "ANSIBLE_CONFIG": str(lab / "ansible.cfg"),
           "PATH": tools_path()}
    command = ["ansible-playbook", str(ROOT / "playbooks" / "ledger_deploy.yml"),
               "-l", "app_primary", "-e", f"ledger_version={version}",
               "-e", f"ledger_artifacts_dir={ROOT / 'build' / 'artifacts'}"]
    subprocess.run(command, env=env, check=True, capture_output=True)


def reset_to_1_0_0(state: Path, lab: Path) -> None:
    deploy_ledger(state, "1.0.0")
    env = {**os.environ, "ANSIBLE_CONFIG": str(lab / "ansible.cfg")}
    subprocess.run([str(Path(sys.executable).parent / "ansible"), "app_primary", "-m",
                    "ansible.builtin.file", "-a", "path=/srv/ledger/releases/1.1.0 state=absent"],
                   env=env, check=True, capture_output=True)


def relctl_apply(state: Path, manifest: Path) -> tuple[dict[str, object], int]:
    """Run ``relctl apply`` and sample the controller's own RSS while it runs."""
    proc = subprocess.Popen([*RELCTL, "--state-dir", str(state), "apply", str(manifest),
                             "--yes", "--json"], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    peak = [0]
    watcher = psutil.Process(proc.pid)

    def sample() -> None:
        while proc.poll() is None:
            try:
                peak[0] = max(peak[0], watcher.memory_info().rss)
            except psutil.NoSuchProcess:
                return
            threading.Event().wait(0.05)

    thread = threading.Thread(target=sample)
    thread.start()
    out, _ = proc.communicate()
    thread.join()
    return json.loads(out), peak[0]


def phase_seconds(state: Path, release: str, prefixes: tuple[str, ...]) -> float:
    shown = relctl(state, "show", release)
    return sum(p["seconds"] or 0 for p in shown["phases"]  # type: ignore[union-attr]
               if str(p["name"]).startswith(prefixes))


def main() -> None:
    hosts = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    state = fresh_state_dir("pipeline")
    lab = state / "lab"
    relctl(state, "lab", "up", "--primary", str(hosts), "--backup", "0",
           "--base-address", "127.0.50.10", *LEDGER)
    try:
        deploy_ledger(state, "1.0.0")
        plain, _ = timed(ansible_playbook, lab, "1.1.0")
        reset_to_1_0_0(state, lab)
        close_control_masters(lab / "cp")
        outcome, rss_ok = relctl_apply(state, bench_manifest(state, "1.1.0", hosts))
        applied = phase_seconds(state, "ledger-1.1.0", ("apply:",))
        failed, rss_rb = relctl_apply(state, bench_manifest(state, "2.0.1", hosts))
        rollback = phase_seconds(state, "ledger-2.0.1", ("rollback", "gate:testinfra:restored"))
    finally:
        relctl(state, "lab", "down")
    print(f"release pipeline on {hosts} lab hosts")
    print(f"  ansible-playbook deploy 1.0.0 -> 1.1.0     {plain:7.2f} s")
    print(f"  relctl apply phase, same change           {applied:7.2f} s  "
          f"(ratio {applied / plain:.3f}; {outcome['state']})")
    print(f"  relctl whole release (snapshot+gates)     {float(outcome['seconds']):7.2f} s")  # type: ignore[arg-type]
    print(f"  2.0.1: failed gate -> restored + verified {rollback:7.2f} s  ({failed['state']})")
    print(f"  controller peak RSS                       {max(rss_ok, rss_rb) / 2**20:7.1f} MiB")


if __name__ == "__main__":
    main()
