"""Releases and their event log: the journal's top level."""

from __future__ import annotations

from pathlib import Path

from controller.errors import InputError
from controller.journal.db import JournalBase
from controller.journal.identity import current_holder
from controller.journal.records import (
    FINAL_STATES,
    RELEASE_STATES,
    Holder,
    ReleaseRecord,
    ReleaseState,
)

OPEN_STATES = tuple(s for s in RELEASE_STATES if s not in FINAL_STATES)
# The largest id a journal row can have (a signed 64-bit INTEGER in SQLite and PostgreSQL).
MAX_RECORD_ID = 2**63 - 1
_OPEN = ", ".join("?" * len(OPEN_STATES))


class ReleaseLog(JournalBase):
    """Start, advance and look up releases; write their event log."""

    def start_release(self, *, name: str, version: str, service: str, environment: str,
                      manifest_path: Path, manifest_sha256: str,
                      operator: Holder | None = None,
                      state: ReleaseState = "planned") -> int:
        """Record a new release attempt; returns its id."""
        who = operator or current_holder()
        release_id = self._insert(
            "INSERT INTO releases (name, version, service, environment, manifest_path,"
            " manifest_sha256, state, started, operator_user, operator_host, operator_pid,"
            " operator_started) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (name, version, service, environment, str(manifest_path), manifest_sha256, state,
             self._now(), who.user, who.host, who.pid, who.started),
        )
        self.log(release_id, f"release {name} ({version}) started by {who}: {state}")
        return release_id

    def set_release_state(self, release_id: int, state: ReleaseState, *,
                          exit_code: int | None = None, message: str | None = None) -> None:
        """Move a release to ``state``; a final state also stamps its end time."""
        if state not in RELEASE_STATES:
            raise ValueError(f"unknown release state {state!r}")
        ended = self._now() if state in FINAL_STATES else None
        cursor = self._write(
            "UPDATE releases SET state = ?, ended = ?, exit_code = COALESCE(?, exit_code),"
            " message = COALESCE(?, message) WHERE id = ?",
            (state, ended, exit_code, message, release_id),
        )
        self._require(cursor.rowcount, release_id)
        self.log(release_id, f"state: {state}" + (f" ({message})" if message else ""))

    def mark_bad(self, release_id: int, reason: str | None = None) -> None:
        """Flag a release as bad: it is never chosen as a rollback target, and ``apply``
        refuses it (unless forced). The first time and reason it went bad are kept."""
        cursor = self._write(
            "UPDATE releases SET bad = 1, bad_since = COALESCE(bad_since, ?),"
            " bad_reason = COALESCE(bad_reason, ?) WHERE id = ?",
            (self._now(), reason, release_id))
        self._require(cursor.rowcount, release_id)
        self.log(release_id, "marked bad" + (f": {reason}" if reason else ""))

    def _require(self, rowcount: int, release_id: int) -> None:
        if rowcount == 0:
            raise InputError(f"no release #{release_id} in the journal {self.where}")

    def release(self, release_id: int) -> ReleaseRecord:
        """The release with id ``release_id``; ``InputError`` if there is none."""
        row = self._row("SELECT * FROM releases WHERE id = ?", (release_id,))
        if row is None:
            raise InputError(f"no release #{release_id} in the journal {self.where}")
        return ReleaseRecord.from_row(row)

    def find_release(self, name_or_id: str | int) -> ReleaseRecord | None:
        """A release by id (``12``, ``"12"``, ``"#12"``) or the latest attempt of a name."""
        text = str(name_or_id).removeprefix("#")
        row = None
        if is_record_id(text):
            row = self._row("SELECT * FROM releases WHERE id = ?", (int(text),))
        if row is None and not isinstance(name_or_id, int):
            row = self._row("SELECT * FROM releases WHERE name = ? ORDER BY id DESC LIMIT 1",
                            (name_or_id,))
        return ReleaseRecord.from_row(row) if row is not None else None

    def history(self, limit: int = 20, environment: str | None = None,
                service: str | None = None) -> list[ReleaseRecord]:
        """The latest releases, newest first, optionally of one environment/service."""
        rows = self._rows(
            "SELECT * FROM releases WHERE (? IS NULL OR environment = ?)"
            " AND (? IS NULL OR service = ?) ORDER BY id DESC LIMIT ?",
            (environment, environment, service, service, limit),
        )
        return [ReleaseRecord.from_row(r) for r in rows]

    def scopes(self) -> list[tuple[str, str]]:
        """Every (service, environment) the journal has a release of, sorted."""
        rows = self._rows("SELECT DISTINCT service, environment FROM releases"
                          " ORDER BY service, environment")
        return [(r["service"], r["environment"]) for r in rows]

    def bad_release(self, name: str) -> ReleaseRecord | None:
        """The latest attempt of release ``name`` that is marked bad, if any."""
        row = self._row("SELECT * FROM releases WHERE name = ? AND bad = 1"
                        " ORDER BY id DESC LIMIT 1", (name,))
        return ReleaseRecord.from_row(row) if row is not None else None

    def last_good_release(self, service: str, environment: str) -> ReleaseRecord | None:
        """The latest release of ``service`` in ``environment`` that was released and
        is not marked bad: the rollback target."""
        row = self._row(
            "SELECT * FROM releases WHERE service = ? AND environment = ?"
            " AND state = 'released' AND bad = 0 ORDER BY id DESC LIMIT 1",
            (service, environment),
        )
        return ReleaseRecord.from_row(row) if row is not None else None

    def unfinished_releases(self, environment: str | None = None) -> list[ReleaseRecord]:
        """Releases not in a final state (a crash left them), oldest first: for resume."""
        rows = self._rows(
            f"SELECT * FROM releases WHERE state IN ({_OPEN})"
            " AND (? IS NULL OR environment = ?) ORDER BY id",
            (*OPEN_STATES, environment, environment),
        )
        return [ReleaseRecord.from_row(r) for r in rows]


def is_record_id(text: str) -> bool:
    """``text`` is a row id: ASCII digits only (not ``²`` or ``١٢``, which ``int`` reads
    too) naming a number a journal row can have."""
    return (text.isascii() and text.isdigit() and len(text) <= len(str(MAX_RECORD_ID))
            and int(text) <= MAX_RECORD_ID)
