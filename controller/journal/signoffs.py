"""Sign-offs, and what ``apply`` asks to have signed.

A sign-off approves one manifest text (its sha256) for one environment. ``apply`` records
a request for the manifest it refuses or waits for, so that ``relctl signoff RELEASE``
signs exactly what apply will run; ``--manifest`` names it explicitly instead.
"""

from __future__ import annotations

from controller.journal.db import JournalBase
from controller.journal.records import ManifestRef, SignoffRecord, SignoffRequest


class SignoffLog(JournalBase):
    """Who approved which manifest of a release for which environment, and when."""

    def add_signoff(self, release: str, role: str, by: str, note: str = "",
                    signed: ManifestRef | None = None) -> int:
        """Record that ``by`` approved ``release`` as ``role`` (the manifest ``signed``,
        which a sign-off needs to count; without one it approves nothing); its id."""
        return self._insert(
            "INSERT INTO signoffs (release, role, signed_by, note, time, environment,"
            " manifest_path, manifest_sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (release, role, by, note, self._now(), signed and signed.environment,
             signed and str(signed.path), signed and signed.sha256),
        )

    def signoffs(self, release: str) -> list[SignoffRecord]:
        """The sign-offs of a release name (of any manifest text), oldest first."""
        rows = self._rows("SELECT * FROM signoffs WHERE release = ? ORDER BY id", (release,))
        return [SignoffRecord.from_row(r) for r in rows]

    def request_signoff(self, release: str, manifest: ManifestRef) -> int:
        """Record that ``apply`` waits for sign-offs of ``manifest``; its id."""
        return self._insert(
            "INSERT INTO signoff_requests (release, environment, manifest_path,"
            " manifest_sha256, time) VALUES (?, ?, ?, ?, ?)",
            (release, manifest.environment, str(manifest.path), manifest.sha256, self._now()),
        )

    def signoff_request(self, release: str) -> SignoffRequest | None:
        """The latest manifest of ``release`` that ``apply`` asked to have signed."""
        row = self._row("SELECT * FROM signoff_requests WHERE release = ?"
                        " ORDER BY id DESC LIMIT 1", (release,))
        return SignoffRequest.from_row(row) if row is not None else None

    def signoff_requests(self, limit: int = 20) -> list[SignoffRequest]:
        """The latest request of each release name, newest first (``relctl serve`` lists
        those still waiting)."""
        rows = self._rows("SELECT * FROM signoff_requests WHERE id IN (SELECT max(id) FROM"
                          " signoff_requests GROUP BY release) ORDER BY id DESC LIMIT ?",
                          (limit,))
        return [SignoffRequest.from_row(r) for r in rows]
