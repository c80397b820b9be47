"""The journal: one SQLite file recording every release step before and after it runs."""

from __future__ import annotations

from controller.journal.locks import LockTable
from controller.journal.releases import ReleaseLog
from controller.journal.steps import StepLog


class Journal(ReleaseLog, StepLog, LockTable):
    """Releases, phases, host states, snapshots, gate results, events, locks, sign-offs.

    ``Journal(path)`` opens (or creates and migrates) the file; use it as a context
    manager or call ``close()``. Every write is committed at once.
    """
