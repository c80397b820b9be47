"""Where relctl keeps its state and finds the files it ships (playbooks, templates)."""

from __future__ import annotations

import os
import sys
from importlib import resources
from pathlib import Path

from controller.errors import InputError, PrerequisiteError

STATE_DIR_ENV = "RELCTL_STATE_DIR"
PLAYBOOKS_ENV = "RELCTL_PLAYBOOKS"


def default_state_dir() -> Path:
    """The state directory: ``$RELCTL_STATE_DIR``, else ``$XDG_STATE_HOME/relctl``."""
    explicit = os.environ.get(STATE_DIR_ENV)
    if explicit:
        return _expanded(explicit, STATE_DIR_ENV)
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return _expanded(xdg, "XDG_STATE_HOME") / "relctl"


def _expanded(path: str, source: str) -> Path:
    try:
        return Path(path).expanduser().absolute()
    except RuntimeError as exc:  # ~nosuchuser
        raise InputError(f"${source}: {path}: {exc}") from exc


def playbooks_dir() -> Path:
    """relctl's own playbooks: ``$RELCTL_PLAYBOOKS``, else those shipped in the package."""
    explicit = os.environ.get(PLAYBOOKS_ENV)
    if explicit:
        return _expanded(explicit, PLAYBOOKS_ENV)
    # The package is installed as plain files (wheel or editable), never zipped, so the
    # resource folder is a real directory that ansible-playbook can read.
    return Path(str(resources.files("controller") / "playbooks"))


def bundled_playbook(name: str) -> Path:
    """The path of relctl's playbook ``name``; a clear error when it is not there."""
    path = playbooks_dir() / name
    if not path.is_file():
        source = f"${PLAYBOOKS_ENV}" if os.environ.get(PLAYBOOKS_ENV) else "the relctl package"
        raise PrerequisiteError(
            f"relctl's playbook {name} is missing: {path} does not exist ({source})",
            hint=f"reinstall relctl, or point ${PLAYBOOKS_ENV} at a folder holding {name}",
        )
    return path


def tools_path() -> str:
    """``$PATH`` with this interpreter's bin dir first, where ansible-playbook, pytest and
    locust are installed with relctl (its virtualenv need not be on ``$PATH``)."""
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
