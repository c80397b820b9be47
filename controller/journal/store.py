"""The journal: every release step recorded before and after it runs (SQLite or PostgreSQL)."""

from __future__ import annotations

from controller.journal.changes import ChangeMark
from controller.journal.children import ChildLog
from controller.journal.continuity import ContinuityLog
from controller.journal.copy import CopyLog
from controller.journal.locks import LockTable
from controller.journal.monitoring import MonitorLog
from controller.journal.releases import ReleaseLog
from controller.journal.signoffs import SignoffLog
from controller.journal.steps import StepLog


class Journal(ReleaseLog, StepLog, SignoffLog, LockTable, ContinuityLog, MonitorLog,
              ChildLog, CopyLog, ChangeMark):
    """Releases, phases, host states, snapshots, gate results, events, locks, sign-offs,
    continuity records (replications, failovers, failbacks, drills), warranty monitors and
    the processes relctl starts (children).

    ``Journal(target)`` opens (or creates and migrates) the SQLite file or the PostgreSQL
    database ``target`` names; use it as a context manager or call ``close()``. Every
    write is committed at once.
    """
