"""The sign-off gate of ``apply``: before the lock, before anything is touched.

When the manifest's environment requires sign-offs that the journal does not hold, the
gate waits for them (the manifest's ``signoff.wait`` or the caller's) by polling the
journal, where ``relctl signoff`` writes from another terminal; a wait that runs out
counts as denied, and the release is refused with ``SignoffMissingError`` (exit 11).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from controller.errors import SignoffMissingError
from controller.journal import Journal
from controller.models.durations import format_duration
from controller.models.manifest import Manifest
from controller.planning.signoff import (
    Approval,
    SignoffStatus,
    poll_interval,
    refusal,
    signoff_status,
)

Progress = Callable[[str], None]


def read_status(journal: Journal, release: str, required: list[str]) -> SignoffStatus:
    """``release``'s sign-offs in the journal, against the ``required`` roles."""
    approvals = [Approval(s.role, s.by, s.time, s.note) for s in journal.signoffs(release)]
    return signoff_status(release, required, approvals)


def require_signoffs(journal: Journal, manifest: Manifest, progress: Progress, *,
                     wait_s: float | None = None, sleep: Callable[[float], None] = time.sleep,
                     clock: Callable[[], float] = time.monotonic) -> SignoffStatus | None:
    """The release's sign-offs when complete (None when none are required); otherwise
    wait up to ``wait_s`` (default: the manifest's ``signoff.wait``), then refuse."""
    policy = manifest.signoff
    if policy is None:
        return None
    wait = policy.wait if wait_s is None else wait_s
    status = read_status(journal, manifest.release, policy.required)
    if not status.complete and wait:
        status = _wait(journal, status, wait, progress, sleep, clock)
    if status.complete:
        return status
    message, hint = refusal(manifest.release, manifest.environment, status.missing, wait)
    journal.log(None, f"apply refused: {message}")
    raise SignoffMissingError(message, missing=status.missing, hint=hint)


def _wait(journal: Journal, status: SignoffStatus, wait: float, progress: Progress,
          sleep: Callable[[float], None], clock: Callable[[], float]) -> SignoffStatus:
    progress(f"waiting up to {format_duration(wait)} for sign-off by "
             f"{', '.join(status.missing)}")
    deadline = clock() + wait
    while not status.complete and (left := deadline - clock()) > 0:
        sleep(min(poll_interval(wait), left))
        latest = read_status(journal, status.release, status.required)
        for role in set(status.missing) - set(latest.missing):
            signer = next(a.by for a in latest.approvals if a.role == role)
            progress(f"signed off as {role} by {signer}")
        status = latest
    return status


def approvals_line(status: SignoffStatus) -> str:
    """The sign-offs a release went ahead on, for its event log."""
    latest = {a.role: a for a in status.approvals}  # the newest sign-off of each role
    return "signed off: " + ", ".join(
        f"{role} by {latest[role].by} at {latest[role].time.isoformat(timespec='seconds')}"
        for role in status.required)
