"""The children of a release in the journal, and stopping what a dead controller left."""

from __future__ import annotations

import os
import re
import socket
import stat
import uuid
from dataclasses import dataclass
from pathlib import Path

from controller.adapters.children import (
    ChildPid,
    LeftConnections,
    left_connections,
    read_record,
    stop_recorded,
)
from controller.adapters.processes import same_process
from controller.journal import ChildRecord, Holder, Journal, current_holder


@dataclass(frozen=True)
class JournalChildren:
    """Records each child of one release (``ChildRecorder``) before it starts."""

    journal: Journal
    release_id: int | None
    records_dir: Path

    def before(self, label: str, program: str) -> tuple[int, Path]:
        """Journal a child about to start; its launcher writes its pid to the file named."""
        record = self.records_dir / f"{uuid.uuid4().hex}.json"
        child_id = self.journal.add_child(self.release_id, label, program, record,
                                          current_holder())
        return child_id, record

    def running(self, child_id: int, pid: ChildPid) -> None:
        """The launcher of the child runs as ``pid``."""
        self.journal.child_running(child_id, pid.pid, pid.started)

    def after(self, child_id: int, exit_code: int | None, stopped: bool = False) -> None:
        """The child ended (``exit_code`` None: unknown, or it was stopped by relctl)."""
        self.journal.child_ended(child_id, "stopped" if stopped else "ended", exit_code)


def stop_orphans(journal: Journal, children_dir: Path, *, release_id: int | None = None,
                 owner: Holder | None = None) -> list[str]:
    """Stop the recorded children of a dead controller (of one release, or of one lock
    holder), by the pid and create time their launchers wrote in ``children_dir``;
    returns one line per child it could not leave be. A journal row alone never names
    what is stopped: a journal shared with others (PostgreSQL) could name any process."""
    lines = []
    here = socket.gethostname()
    for child in journal.open_children(release_id=release_id, owner=owner):
        name = f"{child.program} ({child.label})"
        if child.host != here:
            lines.append(f"{name} ran on {child.host}: stop it there if it still runs")
            continue
        if same_process(child.owner_pid, child.owner_started):
            lines.append(f"{name}: its controller (pid {child.owner_pid}) still runs; left alone")
            continue
        pid = _launcher_of(child, children_dir)
        if isinstance(pid, str):
            lines.append(f"{name}: {pid}; left alone")
            continue
        stopped = stop_recorded(pid)
        journal.child_ended(child.id, "stopped" if stopped else "ended")
        if stopped:
            pids = ", ".join(map(str, stopped))
            lines.append(f"stopped {name} left by the dead controller: pids {pids}")
    if lines and release_id is not None:
        for line in lines:
            journal.log(release_id, line)
    return lines


def orphan_connections(journal: Journal, release_id: int,
                       children_dir: Path) -> LeftConnections:
    """The ssh connections the children of a dead controller held when their launchers
    were stopped, and the age of the oldest of those children (what they ran on the hosts
    is stopped there before anything else); read only beside records of ``children_dir``."""
    here = socket.gethostname()
    found: set[str] = set()
    age = 0.0
    for child in journal.children(release_id):
        if child.host == here and _own_record(child.record, children_dir):
            left = left_connections(child.record)
            found.update(left.connections)
            age = max(age, left.age_s)
    return LeftConnections(sorted(found), age)


RECORD_NAME = re.compile(r"[0-9a-f]{32}\.json")  # JournalChildren.before's names


def _own_record(record: Path, children_dir: Path) -> bool:
    """Whether ``record`` is a file this controller's launchers write: in
    ``children_dir``, named as ``JournalChildren`` names them, a regular file (no link)
    of this user's (or not written yet)."""
    if record.parent.resolve() != children_dir.resolve() or not RECORD_NAME.fullmatch(
            record.name):
        return False
    try:
        info = record.lstat()
    except FileNotFoundError:
        return True  # its launcher never ran: nothing to stop
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and info.st_uid == os.getuid()


def _launcher_of(child: ChildRecord, children_dir: Path) -> ChildPid | str | None:
    """The pid and create time the child's launcher wrote (None: it never ran), or why
    the journal's row cannot be trusted with them."""
    if not _own_record(child.record, children_dir):
        return f"its record {child.record} is not one of {children_dir}"
    written = read_record(child.record)
    if (written is not None and child.pid is not None
            and (written.pid, round(written.started, 2)) != (child.pid,
                                                            round(child.started or 0, 2))):
        return (f"the journal's pid {child.pid} is not the one its launcher wrote "
                f"({written.pid})")
    return written
