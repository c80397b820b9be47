"""Commands on a lab's hosts: ad-hoc Ansible through its generated inventory and
ansible.cfg, and plain ssh with the command line Ansible itself resolves for a host."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import Any

import ansible_runner

from controller.adapters.connections import Connection, resolve_connections
from controller.paths import tools_path
from controller.planning.lab import LabLayout

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


_CONNECTIONS: dict[tuple[Path, str], Connection] = {}


def shell(ansible_cfg: Path, host: str, command: str) -> str:
    """stdout of the shell ``command`` run on one host (its trailing newlines dropped, as
    Ansible's shell module does); fails the test if it fails. It goes over ssh with the
    command line Ansible resolves for the host (relctl's lean path, ``connections.py``),
    through the lab's ControlPersist masters: a few ms where an ad-hoc Ansible run of
    the shell module costs half a second of CPU."""
    key = (ansible_cfg, host)
    if key not in _CONNECTIONS:
        layout = LabLayout(ansible_cfg.parent)  # STATE_DIR/lab
        found = resolve_connections(layout.inventory, ansible_cfg, [host],
                                    layout.root.parent / "connections")
        assert host in found and not found[host].become, f"no plain ssh command for {host}"
        _CONNECTIONS[key] = found[host]
    done = subprocess.run([*_CONNECTIONS[key].argv, command], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, f"{command} on {host}: exit {done.returncode}: {done.stderr}"
    return done.stdout.rstrip("\r\n")
