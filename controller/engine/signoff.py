"""The sign-off gate of ``apply``: before the lock, before anything is touched.

When the manifest's environment requires sign-offs that the journal does not hold, the
gate waits for them (the manifest's ``signoff.wait`` or the caller's) by polling the
journal, where ``relctl signoff`` writes from another terminal; a wait that runs out
counts as denied, and the release is refused with ``SignoffMissingError`` (exit 11).
Only sign-offs of this manifest's text (sha256) for its environment count; the manifest
apply waits for is recorded, so that ``relctl signoff RELEASE`` signs exactly that.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from pathlib import Path

from controller.errors import InputError, SignoffMissingError
from controller.journal import Journal, ManifestRef, SignoffRecord
from controller.models.durations import format_duration
from controller.models.manifest import SLUG_PATTERN, Manifest
from controller.planning.signoff import (
    Approval,
    SignoffStatus,
    poll_interval,
    refusal,
    sign_command,
    signoff_status,
)

Progress = Callable[[str], None]


def manifest_ref(manifest: Manifest) -> ManifestRef:
    """What a sign-off of ``manifest`` approves: its text's sha256 in its environment."""
    sha256 = manifest.source_sha256 or hashlib.sha256(
        manifest.model_dump_json().encode()).hexdigest()  # a manifest built in code
    return ManifestRef(manifest.environment, manifest.source_path or Path(manifest.release),
                       sha256)


def approval(record: SignoffRecord) -> Approval:
    """A journal sign-off as planning sees it."""
    signed = record.signed
    return Approval(record.role, record.by, record.time, record.note,
                    signed.environment if signed else None, signed.sha256 if signed else None)


def read_status(journal: Journal, release: str, required: list[str],
                bound_to: ManifestRef | None = None) -> SignoffStatus:
    """``release``'s sign-offs in the journal, against the ``required`` roles; with
    ``bound_to``, only the sign-offs of that manifest text and environment count."""
    approvals = [approval(s) for s in journal.signoffs(release)]
    scope = (bound_to.environment, bound_to.sha256) if bound_to else None
    return signoff_status(release, required, approvals, scope)


def require_signoffs(journal: Journal, manifest: Manifest, progress: Progress, *,
                     wait_s: float | None = None, sleep: Callable[[float], None] = time.sleep,
                     clock: Callable[[], float] = time.monotonic) -> SignoffStatus | None:
    """The release's sign-offs when complete (None when none are required); otherwise
    wait up to ``wait_s`` (default: the manifest's ``signoff.wait``), then refuse."""
    policy = manifest.signoff
    if policy is None:
        return None
    wait = policy.wait if wait_s is None else wait_s
    ref = manifest_ref(manifest)
    status = read_status(journal, manifest.release, policy.required, ref)
    if not status.complete:
        journal.request_signoff(manifest.release, ref)
    if not status.complete and wait:
        status = _wait(journal, status, ref, wait, progress, sleep, clock)
    if status.complete:
        return status
    message, hint = refusal(manifest.release, manifest.environment, status.missing, wait,
                            status.stale)
    hint += (f"\n(a sign-off approves {ref.path} as it is now, sha256 {ref.sha256[:12]}, "
             f"for {ref.environment}: an edit needs new sign-offs)")
    journal.log(None, f"apply refused: {message}")
    raise SignoffMissingError(message, missing=status.missing, hint=hint)


def _wait(journal: Journal, status: SignoffStatus, ref: ManifestRef, wait: float,
          progress: Progress, sleep: Callable[[float], None],
          clock: Callable[[], float]) -> SignoffStatus:
    progress(f"waiting up to {format_duration(wait)} for sign-off by "
             f"{', '.join(status.missing)}")
    deadline = clock() + wait
    while not status.complete and (left := deadline - clock()) > 0:
        sleep(min(poll_interval(wait), left))
        latest = read_status(journal, status.release, status.required, ref)
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


def record_signoff(journal: Journal, release: str, role: str | None, signer: str | None,
                   note: str, signed: ManifestRef) -> Approval:
    """Check the input and write the sign-off of ``signed`` to the journal; the approval."""
    if role is None or not (signer or "").strip():
        raise InputError("a sign-off needs --role and --by (or use --list)",
                         hint=sign_command(release, role or "ROLE"))
    check_slug("role", role)
    signoff_id = journal.add_signoff(release, role, (signer or "").strip(), note.strip(),
                                     signed)
    return approval(next(s for s in journal.signoffs(release) if s.id == signoff_id))


def check_slug(what: str, value: str) -> None:
    """``InputError`` (exit 2) unless ``value`` is a valid release or role name."""
    if not re.fullmatch(SLUG_PATTERN, value) or len(value) > 100:
        raise InputError(f"invalid {what} {value!r}: lowercase letters, digits, '.', '_' "
                         "and '-', starting with a letter or digit (e.g. change-board)")
