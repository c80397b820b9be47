"""What ``apply`` checks before it takes the lock: a release the journal marks bad is
refused (exit 2, saying when and why it went bad) unless the operator forces it, as
Deployer's BAD_RELEASE does. Sign-offs are checked next (``controller.engine.signoff``).
"""

from __future__ import annotations

from collections.abc import Callable

from controller.errors import InputError
from controller.journal import Journal, ReleaseRecord
from controller.models.manifest import Manifest


def refuse_bad_release(journal: Journal, manifest: Manifest, *, force: bool = False,
                       progress: Callable[[str], None] = lambda _m: None) -> None:
    """``InputError`` when the journal marks release ``manifest.release`` bad, unless
    ``force`` (then the override is logged and said)."""
    bad = journal.bad_release(manifest.release)
    if bad is None:
        return
    why = why_bad(bad)
    if force:
        journal.log(None, f"apply --force of {bad.name}, marked bad: {why}")
        progress(f"--force: applying {bad.name} although it is marked bad ({why})")
        return
    raise InputError(f"{bad.name} is marked bad: {why}",
                     hint="release a fixed version under a new name, or apply --force "
                          "to apply this one anyway")


def why_bad(record: ReleaseRecord) -> str:
    """When and why ``record`` went bad, in one line (older journals: its end and message)."""
    moment = record.bad_since or record.ended or record.started
    reason = record.bad_reason or record.message or "no reason recorded"
    return (f"since {moment.astimezone().strftime('%Y-%m-%d %H:%M:%S %Z')} "
            f"(release #{record.id} in {record.environment}): {reason}")
