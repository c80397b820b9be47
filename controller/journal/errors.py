"""Errors of the journal, in the tree of ``controller.errors``.

    RelctlError                      exit 1
    ├── JournalError                 exit 1   the journal file cannot be opened or used
    └── LockedError                  exit 5   another release holds the environment's lock
"""

from __future__ import annotations

from controller.errors import ExitCode, RelctlError


class JournalError(RelctlError):
    """The journal database is unreadable, too new, or lacks a record asked for."""


class LockedError(RelctlError):
    """The environment is locked by another release (or its lock may not be broken)."""

    exit_code = ExitCode.LOCKED
