"""Every error relctl raises, and the exit code each one becomes at the CLI edge.

    RelctlError                      exit 1   something unexpected went wrong
    ├── InputError                   exit 2   bad input: a manifest, an option, a file
    ├── PrerequisiteError            exit 6   this machine lacks what the job needs
    ├── LabError                     exit 7   the staging lab could not be brought up or used
    │   └── AddressInUseError        exit 7   a lab address/port is already taken
    ├── DataUnreachableError         exit 7   a data item's database server did not answer
    │   (exit 7 also: journal.errors.JournalUnreachableError, the journal's database
    │    server cannot be reached: exit 7 means "a system relctl needs is unreachable")
    ├── PlaybookError                exit 8   an Ansible playbook run failed
    ├── ContinuityError              exit 9   a failover/failback/drill could not restore
    │                                         the service: a human must act now
    └── SignoffMissingError          exit 11  the environment requires sign-offs the
                                              release lacks: nothing was touched
    (exit 10: a drill ran, and measured RTO/RPO missed a target)
    (exit 12: a signal stopped a release before any host changed)
    (exit 13: released on the primaries, but the backup site did not follow it)

Library code raises these and never prints or exits; ``controller.cli`` maps them to a
message and an exit code in one place.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes a pipeline can act on; documented in the README."""

    OK = 0
    ERROR = 1
    INVALID_INPUT = 2
    ROLLED_BACK = 3
    ROLLBACK_FAILED = 4
    LOCKED = 5
    PREREQUISITE = 6
    LAB = 7
    UNREACHABLE = 7  # the same code: the lab, or the journal's database, cannot be reached
    PLAYBOOK = 8
    CONTINUITY_FAILED = 9
    TARGETS_MISSED = 10
    SIGNOFF_MISSING = 11
    INTERRUPTED = 12  # a signal stopped the release before any host changed
    BACKUP_BEHIND = 13  # released on the primaries; the backup site did not follow


class RelctlError(Exception):
    """Base of every error relctl raises on purpose."""

    exit_code: ExitCode = ExitCode.ERROR

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class InputError(RelctlError):
    """Invalid input: names the file, line and field where it can."""

    exit_code = ExitCode.INVALID_INPUT


class PrerequisiteError(RelctlError):
    """A tool, privilege or kernel feature the job needs is missing."""

    exit_code = ExitCode.PREREQUISITE


class LabError(RelctlError):
    """The staging lab could not be started, reached or stopped."""

    exit_code = ExitCode.LAB


class AddressInUseError(LabError):
    """A loopback address and port the lab wants is already bound by something else."""


class DataUnreachableError(RelctlError):
    """A data item's database server cannot be reached (refused, timed out): nothing was
    touched."""

    exit_code = ExitCode.UNREACHABLE


class PlaybookError(RelctlError):
    """An ansible-runner playbook run ended unsuccessfully."""

    exit_code = ExitCode.PLAYBOOK


class ContinuityError(RelctlError):
    """A failover, failback or drill could not bring the service back."""

    exit_code = ExitCode.CONTINUITY_FAILED


class SignoffMissingError(RelctlError):
    """``apply`` refused: roles the environment requires have not signed the release off."""

    exit_code = ExitCode.SIGNOFF_MISSING

    def __init__(self, message: str, *, missing: list[str], hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.missing = missing


class RollbackRefusedError(RelctlError):
    """A rollback past a point of no return (an irreversible data conversion) was asked."""

    exit_code = ExitCode.ROLLBACK_FAILED
