"""Deploy ledger to 10 lab hosts: relctl's tuned ansible.cfg versus Ansible's defaults.

Same playbook, same inventory, same lab; each run switches versions (1.0.0 <-> 1.1.0) so
every run does real work. ssh masters are closed before each run so both start cold.
Run: .venv/bin/python bench/deploy_tuning.py [HOSTS] [ROUNDS]   (default: 10 2)
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path

from _lab import LEDGER, ROOT, ensure_artifacts, fresh_state_dir, relctl, timed

from controller.adapters.ssh import close_control_masters
from controller.paths import tools_path

PLAYBOOK = ROOT / "playbooks" / "ledger_deploy.yml"
ARTIFACTS = ROOT / "build" / "artifacts"


def defaults_cfg(lab: Path) -> Path:
    """An ansible.cfg with only what connecting needs; everything else at Ansible's defaults."""
    cfg = lab / "ansible-defaults.cfg"
    cfg.write_text(
        "[defaults]\n"
        f"inventory = {lab / 'inventory.yml'}\n"
        "[ssh_connection]\n"
        f"ssh_args = -C -o ControlMaster=auto -o ControlPersist=60s "
        f"-o UserKnownHostsFile={lab / 'known_hosts'}\n"
        f"control_path_dir = {lab / 'cp'}\n"
    )
    return cfg


def deploy(cfg: Path, version: str) -> str:
    """One ansible-playbook run of the deploy playbook with config ``cfg``; its output."""
    close_control_masters(cfg.parent / "cp")
    env = {**os.environ, "ANSIBLE_CONFIG": str(cfg),
           "PATH": tools_path()}
    command = ["ansible-playbook", str(PLAYBOOK), "-l", "app_primary",
               "-e", f"ledger_version={version}", "-e", f"ledger_artifacts_dir={ARTIFACTS}"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"deploy {version} failed:\n{result.stdout[-2000:]}")
    return result.stdout


def main() -> None:
    hosts = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    ensure_artifacts("1.0.0", "1.1.0")
    state = fresh_state_dir("deploy-tuning")
    lab = state / "lab"
    relctl(state, "lab", "up", "--primary", str(hosts), "--backup", "0",
           "--base-address", "127.0.40.10", *LEDGER)
    configs = {"relctl tuned": lab / "ansible.cfg", "ansible defaults": defaults_cfg(lab)}
    seconds: dict[str, list[float]] = {name: [] for name in configs}
    try:
        deploy(configs["relctl tuned"], "1.0.0")  # first install, not measured
        version = "1.0.0"
        for _ in range(rounds):
            for name, cfg in configs.items():
                version = "1.1.0" if version == "1.0.0" else "1.0.0"
                elapsed, _ = timed(deploy, cfg, version)
                seconds[name].append(elapsed)
    finally:
        close_control_masters(lab / "cp")
        relctl(state, "lab", "down")
    print(f"deploy of ledger to {hosts} hosts, {rounds} runs each (median seconds)")
    for name, values in seconds.items():
        print(f"  {name:<17} {statistics.median(values):6.2f}  runs: "
              + ", ".join(f"{v:.2f}" for v in values))
    ratio = statistics.median(seconds["ansible defaults"]) / statistics.median(
        seconds["relctl tuned"])
    print(f"  speed-up          {ratio:6.2f}x")


if __name__ == "__main__":
    main()
