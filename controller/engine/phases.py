"""A release's phases in the journal: each one's start, end, state, detail and time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from controller.journal import Journal

Progress = Callable[[str], None]


class PhaseScope:
    """``with`` block that journals a phase's start (with the ``hosts`` it works on, when
    given), end, state, detail and duration (monotonic: this machine's wall clock jumps),
    and says how long it took. The detail the block fills replaces the start's (which keeps
    ``hosts`` unless the block set its own)."""

    def __init__(self, journal: Journal, release_id: int, name: str,
                 progress: Progress = lambda _msg: None, hosts: list[str] | None = None) -> None:
        self.journal, self.release_id, self.name = journal, release_id, name
        self.progress, self.hosts = progress, hosts
        self.detail: dict[str, Any] = {}
        self.phase_id = 0
        self.started = 0.0

    def __enter__(self) -> dict[str, Any]:
        # the hosts it works on, journaled as it starts: a live view shows them at once
        self.phase_id = self.journal.begin_phase(
            self.release_id, self.name, {"hosts": self.hosts} if self.hosts else None)
        self.started = time.monotonic()
        return self.detail

    def __exit__(self, kind: object, error: object, _tb: object) -> None:
        seconds = time.monotonic() - self.started
        if self.hosts and "hosts" not in self.detail:  # still named once it has ended
            self.detail["hosts"] = self.hosts
        if error is not None:
            self.detail["error"] = str(error)[:1000]
        self.journal.end_phase(self.phase_id, "failed" if error else "ok", self.detail,
                               seconds=seconds)
        self.progress(f"{self.name}: {seconds:.1f} s" + (" (failed)" if error else ""))
