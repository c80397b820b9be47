"""Checks of this machine: privileges, tools and kernel features the lab needs."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from controller.errors import PrerequisiteError

LAB_TOOLS = {
    "unshare": "util-linux",
    "/usr/sbin/sshd": "openssh-server",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "haproxy": "haproxy",
}


def check_lab_prerequisites(tools: dict[str, str] | None = None) -> None:
    """Raise ``PrerequisiteError`` naming the first thing the lab cannot do without."""
    if os.geteuid() != 0:
        raise PrerequisiteError(
            "the staging lab needs root (it creates namespaces and bind mounts)",
            hint="run relctl lab as root, e.g. with sudo",
        )
    for tool, package in (tools or LAB_TOOLS).items():
        if shutil.which(tool) is None:
            raise PrerequisiteError(
                f"{tool} is not installed", hint=f"apt-get install {package}"
            )
    probe = subprocess.run(
        ["unshare", "--mount", "--uts", "--pid", "--fork", "--mount-proc", "true"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        raise PrerequisiteError(
            f"unshare refused to create namespaces: {probe.stderr.strip()}",
            hint="the lab needs mount, UTS and PID namespaces (a privileged container or VM)",
        )


def ensure_mountpoints(paths: list[str]) -> None:
    """Create the empty machine directories that per-host folders are mounted over."""
    for path in paths:
        Path(path).mkdir(parents=True, exist_ok=True)
