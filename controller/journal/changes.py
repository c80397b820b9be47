"""A mark of what the journal holds that a live view shows: it changes whenever a release
starts, moves phase, changes a host, ends; a lock is taken or given up; a sign-off is
asked for or given; a continuity record starts, is updated or ends. ``relctl serve``
polls it (a handful of indexed reads) and tells open pages to refresh when it moves.
"""

from __future__ import annotations

from controller.journal.db import JournalBase
from controller.journal.releases import _OPEN, OPEN_STATES

_HEADS = ("releases", "events", "phases", "gate_results", "signoffs", "signoff_requests",
          "continuity", "monitors")


class ChangeMark(JournalBase):
    """The journal's change mark."""

    def change_mark(self) -> str:
        """An opaque text that differs whenever what a live view shows has changed."""
        heads = self._row("SELECT " + ", ".join(
            f"(SELECT max(id) FROM {table}) AS {table}" for table in _HEADS))
        open_ids = f"SELECT id FROM releases WHERE state IN ({_OPEN})"
        steps = self._row(
            f"SELECT (SELECT count(ended) FROM phases WHERE release_id IN ({open_ids}))"
            f" AS ended, (SELECT max(updated) FROM host_states WHERE release_id IN ({open_ids}))"
            " AS hosts, (SELECT count(*) FROM releases WHERE bad = 1) AS bad",
            (*OPEN_STATES, *OPEN_STATES))
        locks = self._rows("SELECT environment, holder_pid, acquired FROM locks"
                           " ORDER BY environment")
        running = self._rows("SELECT id, length(detail) AS size FROM continuity"
                             " WHERE state = 'running' ORDER BY id")
        parts = [*(heads[t] for t in _HEADS if heads is not None),
                 *(steps[c] for c in ("ended", "hosts", "bad") if steps is not None),
                 *((r["environment"], r["holder_pid"], r["acquired"]) for r in locks),
                 *((r["id"], r["size"]) for r in running)]
        return repr(parts)
