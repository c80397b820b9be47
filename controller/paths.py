"""Where relctl keeps its state and finds the files it ships (playbooks, templates).

The state directory holds what an attacker on the controller wants: snapshots of config
files (with their passwords), the journal, and the cached ssh command lines relctl runs
as root. So it is private: created 0700, and refused (exit 2, with the fix) when another
user owns it or group or others may write to it, since whoever can write there can make
relctl run their command. A folder of an older relctl that is ours and only *readable*
by others (0755) is tightened to 0700, with a notice: it is the same owner, so nothing
in it can have been planted by someone else through its mode. A readable folder holding
no relctl state (``--state-dir /`` or a home folder, mistyped) is refused, never changed.
"""

from __future__ import annotations

import os
import pwd
import stat
import sys
from importlib import resources
from pathlib import Path

from controller.errors import InputError, PrerequisiteError

STATE_DIR_ENV = "RELCTL_STATE_DIR"
PLAYBOOKS_ENV = "RELCTL_PLAYBOOKS"
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
# The state directory's folders relctl writes secrets or commands to, made private too.
PRIVATE_FOLDERS = ("runs", "snapshots", "connections", "children", "gates")
# What an older relctl left in a state directory: such a folder may be tightened.
STATE_NAMES = frozenset({*PRIVATE_FOLDERS, "lab", "journal.sqlite"})


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


def private_state_dir(path: Path) -> list[str]:
    """Make ``path`` relctl's private state directory (see the module docstring) and its
    folders (``PRIVATE_FOLDERS``) private too; the notices of what was tightened.

    ``InputError`` (exit 2) naming the folder and the fix when one is not safe to use."""
    notices = []
    if private_dir(path, "the state directory", tighten=_is_relctls(path)):
        notices.append(f"tightened the state directory {path} to 0700: it holds snapshots, "
                       "the journal and cached ssh commands")
    for name in PRIVATE_FOLDERS:
        private_dir(path / name, "the state directory's folder")
    return notices


def _is_relctls(path: Path) -> bool:
    """``path`` is empty or holds what relctl keeps: its mode may be changed (never that
    of ``/``, ``/etc`` or a home folder a mistyped --state-dir names)."""
    try:
        names = {entry.name for entry in os.scandir(path)}
    except OSError:
        return True  # missing: relctl creates it
    return not names or bool(names & STATE_NAMES)


def private_dir(path: Path, what: str, *, tighten: bool = True) -> bool:
    """Create ``path`` 0700 when missing, else check it is a folder of this user that
    nobody else may write to; True when it was tightened to 0700 (it was readable).
    Without ``tighten`` a readable folder is refused instead, with the fix."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
        info = os.stat(path)
    except (OSError, ValueError) as error:  # ValueError: a NUL byte in the path
        raise InputError(f"cannot use {what} {path}: {error}") from error
    if not stat.S_ISDIR(info.st_mode):
        raise InputError(f"{what} {path} is not a folder")
    check_private(path, info, what)
    if not stat.S_IMODE(info.st_mode) & 0o077:
        return False
    if not tighten:
        raise InputError(
            f"{what} {path} is readable by others (mode {stat.S_IMODE(info.st_mode):04o}) "
            "and holds no relctl state: relctl does not change the mode of a folder not "
            "its own", hint=f"use a new folder (--state-dir), or if this one is for relctl: "
                            f"chmod 700 {path}")
    os.chmod(path, PRIVATE_DIR_MODE)
    return True


def check_private(path: Path, info: os.stat_result, what: str) -> None:
    """``InputError`` unless ``info`` (of ``path``) is owned by this user and not writable
    by group or others: what another user could write, relctl must not run or restore."""
    me = os.geteuid()
    private = "700" if stat.S_ISDIR(info.st_mode) else "600"
    if info.st_uid != me:
        raise InputError(
            f"{what} {path} is owned by {_user(info.st_uid)}, not by {_user(me)}: relctl "
            "does not trust a folder or file another user can change",
            hint=f"use a state directory of your own (--state-dir), or if it is yours: "
                 f"chown -R {_user(me)} {path} && chmod {private} {path}")
    if stat.S_IMODE(info.st_mode) & 0o022:
        mode = f"{stat.S_IMODE(info.st_mode):04o}"
        raise InputError(
            f"{what} {path} is writable by group or others (mode {mode}): another user "
            "could have planted a file relctl would trust",
            hint=f"check what is in it, then: chmod {private} {path}")


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"
