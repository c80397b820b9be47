"""Cancelling a release: a signal asks, the engine stops at the next safe point.

SIGTERM (a cancelled CI job), SIGINT (Ctrl-C) and SIGHUP (a closed terminal) set the
request (``adapters/signals.py``); a running playbook is cancelled at its next event
(ansible-runner's ``cancel_callback``) and everything it started is stopped before the
engine goes on; between steps the engine raises ``Interrupted``, rolls back what it
touched, and records the release as interrupted (not bad: the release may be fine).
"""

from __future__ import annotations

import signal
from dataclasses import dataclass


class Interrupted(Exception):  # noqa: N818 - a signal inside the engine, like GateFailed
    """A signal asked the release to stop: roll back what it touched, not marked bad."""


@dataclass
class Cancellation:
    """Whether (and by which signal) the release was asked to stop."""

    signum: int | None = None

    def request(self, signum: int) -> None:
        if self.signum is None:
            self.signum = signum

    def requested(self) -> bool:
        return self.signum is not None

    @property
    def reason(self) -> str:
        if self.signum is None:
            return ""
        return f"interrupted by {signal.Signals(self.signum).name}"

    def check(self) -> None:
        """Raise ``Interrupted`` once a stop was asked for."""
        if self.signum is not None:
            raise Interrupted(self.reason)
