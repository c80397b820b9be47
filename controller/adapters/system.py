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


def check_overlay(scratch: Path) -> None:
    """Raise ``PrerequisiteError`` unless an overlay can be mounted with layers in ``scratch``.

    Lab hosts keep what they write in overlay upper layers under the lab directory, so
    its filesystem must be able to hold them (ext4, xfs, tmpfs: yes; overlayfs: no).
    """
    layers = {name: scratch / name for name in ("lower", "upper", "work", "mnt")}
    for folder in layers.values():
        folder.mkdir(parents=True, exist_ok=True)
    options = f"lowerdir={layers['lower']},upperdir={layers['upper']},workdir={layers['work']}"
    probe = subprocess.run(
        ["unshare", "--mount", "mount", "-t", "overlay", "relctl-probe", "-o", options,
         str(layers["mnt"])],
        capture_output=True, text=True, check=False,
    )
    shutil.rmtree(scratch, ignore_errors=True)
    if probe.returncode != 0:
        raise PrerequisiteError(
            f"cannot mount an overlay with its layers in {scratch.parent}: "
            f"{probe.stderr.strip() or 'mount failed'}",
            hint="lab hosts need overlayfs (modprobe overlay) and a --state-dir on a "
            "filesystem that can be an upper layer (ext4, xfs, tmpfs; not overlayfs)",
        )


def ensure_mountpoints(paths: list[str]) -> None:
    """Create the machine directories the lab mounts over, where a machine lacks one."""
    for path in paths:
        Path(path).mkdir(parents=True, exist_ok=True)
