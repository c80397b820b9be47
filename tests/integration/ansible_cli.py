"""Ad-hoc Ansible against a lab, through its generated inventory and ansible.cfg."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import ansible_runner

from controller.paths import tools_path

RESULT_EVENTS = ("runner_on_ok", "runner_on_failed", "runner_on_unreachable")


def ad_hoc(ansible_cfg: Path, pattern: str, module: str, args: str = "") -> dict[str, Any]:
    """Run one module on ``pattern`` with ansible-runner; return each host's result."""
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(dir="/var/tmp") as private:
        runner = ansible_runner.run(
            private_data_dir=private, host_pattern=pattern, module=module, module_args=args,
            envvars={"ANSIBLE_CONFIG": str(ansible_cfg), "PATH": tools_path()}, quiet=True,
        )
        for event in runner.events:
            if event.get("event") in RESULT_EVENTS:
                data = event["event_data"]
                results[data["host"]] = {**data.get("res", {}), "event": event["event"]}
    return results


def shell(ansible_cfg: Path, host: str, command: str) -> str:
    """stdout of ``command`` run on one host; fails the test if it fails."""
    res = ad_hoc(ansible_cfg, host, "ansible.builtin.shell", command)[host]
    assert res.get("rc") == 0, f"{command} on {host}: {res.get('stderr') or res.get('msg')}"
    return str(res["stdout"])
