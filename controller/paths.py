"""Where relctl keeps its state and finds the playbooks it ships."""

from __future__ import annotations

import os
import sys
from pathlib import Path

STATE_DIR_ENV = "RELCTL_STATE_DIR"
PLAYBOOKS_ENV = "RELCTL_PLAYBOOKS"


def default_state_dir() -> Path:
    """The state directory: ``$RELCTL_STATE_DIR``, else ``$XDG_STATE_HOME/relctl``."""
    explicit = os.environ.get(STATE_DIR_ENV)
    if explicit:
        return Path(explicit).expanduser().absolute()
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg).expanduser().absolute() / "relctl"


def project_root() -> Path:
    """The source tree relctl runs from (holds ``playbooks/`` and ``examples/``)."""
    return Path(__file__).resolve().parent.parent


def playbooks_dir() -> Path:
    """The playbooks relctl runs: ``$RELCTL_PLAYBOOKS`` or the project's ``playbooks/``."""
    explicit = os.environ.get(PLAYBOOKS_ENV)
    return Path(explicit).absolute() if explicit else project_root() / "playbooks"


def tools_path() -> str:
    """``$PATH`` with this interpreter's bin dir first, where ansible-playbook, pytest and
    locust are installed with relctl (its virtualenv need not be on ``$PATH``)."""
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
