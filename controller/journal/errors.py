"""Errors of the journal, in the tree of ``controller.errors``.

    RelctlError                        exit 1
    ├── JournalError                   exit 1   the journal lacks a record, or is too new
    │   ├── JournalDatabaseError       exit 1   the database refused a statement
    │   ├── UnusableJournalError       exit 2   the journal path or URL names no usable
    │   │                                       relctl journal (a folder, /proc, not
    │   │                                       SQLite, an unknown kind, a foreign database)
    │   └── JournalUnreachableError    exit 7   the journal's database server cannot be
    │                                           reached, or the connection was lost
    └── LockedError                    exit 5   another release holds the environment's lock
"""

from __future__ import annotations

from controller.errors import ExitCode, RelctlError


class JournalError(RelctlError):
    """The journal database is unreadable, too new, or lacks a record asked for."""


class JournalDatabaseError(JournalError):
    """The journal's database refused a statement (a constraint, a lock wait that ran out)."""


class UnusableJournalError(JournalError):
    """The journal path (``--journal``, ``$RELCTL_JOURNAL``) is bad input: it cannot be
    created or opened, or holds something that is not a relctl journal."""

    exit_code = ExitCode.INVALID_INPUT


class JournalUnreachableError(JournalError):
    """The journal's database server did not answer (refused, timed out, rejected the
    login) or the connection broke: when opening, nothing was touched."""

    exit_code = ExitCode.UNREACHABLE


class LockedError(RelctlError):
    """The environment is locked by another release (or its lock may not be broken)."""

    exit_code = ExitCode.LOCKED
