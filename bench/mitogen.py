"""Deploy ledger to 10 lab hosts: relctl's tuned ansible.cfg (the anchor) against the same
config with Mitogen for Ansible (PyPI ``mitogen``): its ``mitogen_linear`` strategy (what
``playbooks.strategy: mitogen`` runs) and, for comparison, ``mitogen_free`` (each host at
its own pace; relctl does not offer it: a playbook may rely on linear's lockstep).

Same playbook (playbooks/ledger_deploy.yml, unchanged), same inventory, same lab; each
run switches versions (1.0.0 <-> 1.1.0) so every run does real work, and the two configs
alternate. ssh masters are closed before each run so both start cold. Each run's
PLAY RECAP must show no failed and no unreachable host, or the bench stops: a faster
run that does not do the same work is not a result.

Run: .venv/bin/python bench/mitogen.py [HOSTS] [ROUNDS]   (default: 10 3)
Needs ``mitogen`` in the venv (.venv/bin/pip install mitogen).
"""

from __future__ import annotations

import os
import re
import statistics
import sys
from pathlib import Path

from _lab import LEDGER, ensure_artifacts, fresh_state_dir, relctl, timed
from deploy_tuning import deploy as tuned_deploy

from controller.adapters.ssh import close_control_masters

BASE = os.environ.get("RELCTL_BENCH_BASE", "127.0.41.10")


def mitogen_cfg(lab: Path, strategy: str = "mitogen_linear") -> Path:
    """The lab's own ansible.cfg with Mitogen's strategy added, nothing else changed."""
    try:
        import ansible_mitogen  # noqa: PLC0415 - optional, for this bench only
    except ImportError:
        raise SystemExit("mitogen is not installed: .venv/bin/pip install mitogen") from None
    plugins = Path(ansible_mitogen.__file__).parent / "plugins" / "strategy"
    text = (lab / "ansible.cfg").read_text().replace(
        "[defaults]\n", f"[defaults]\nstrategy_plugins = {plugins}\nstrategy = {strategy}\n",
        1)
    cfg = lab / f"ansible-{strategy}.cfg"
    cfg.write_text(text)
    return cfg


def deploy(cfg: Path, version: str, hosts: int) -> None:
    """deploy_tuning's run of the deploy playbook, whose PLAY RECAP must show every host
    with no failed and no unreachable task."""
    output = tuned_deploy(cfg, version)
    recap = re.findall(r"^(\S+)\s+: ok=\d+.*unreachable=(\d+)\s+failed=(\d+)", output,
                       re.MULTILINE)
    if len([h for h, unreachable, failed in recap if unreachable == failed == "0"]) != hosts:
        raise SystemExit(f"deploy {version} with {cfg.name}: not every host ran clean:\n"
                         f"{output[-3000:]}")


def main() -> None:
    hosts = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    ensure_artifacts("1.0.0", "1.1.0")
    state = fresh_state_dir("mitogen")
    lab = state / "lab"
    relctl(state, "lab", "up", "--primary", str(hosts), "--backup", "0",
           "--base-address", BASE, *LEDGER)
    try:
        configs = {"relctl tuned": lab / "ansible.cfg",
                   "tuned + mitogen": mitogen_cfg(lab),
                   "mitogen_free": mitogen_cfg(lab, "mitogen_free")}
        seconds: dict[str, list[float]] = {name: [] for name in configs}
        deploy(configs["relctl tuned"], "1.0.0", hosts)  # first install, not measured
        version = "1.0.0"
        for _ in range(rounds):
            for name, cfg in configs.items():
                version = "1.1.0" if version == "1.0.0" else "1.0.0"
                elapsed, _ = timed(deploy, cfg, version, hosts)
                seconds[name].append(elapsed)
    finally:
        close_control_masters(lab / "cp")
        relctl(state, "lab", "down")
    print(f"deploy of ledger to {hosts} hosts, {rounds} runs each (median seconds)")
    for name, values in seconds.items():
        print(f"  {name:<16} {statistics.median(values):6.2f}  runs: "
              + ", ".join(f"{v:.2f}" for v in values))
    anchor = statistics.median(seconds["relctl tuned"])
    print(f"  mitogen / tuned  x{statistics.median(seconds['tuned + mitogen']) / anchor:.2f}")


if __name__ == "__main__":
    main()
