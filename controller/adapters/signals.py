"""Turn the signals that end a run into a cancellation request instead of a sudden exit."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@contextlib.contextmanager
def requests_on_signals(request: Callable[[int], None],
                        signals: tuple[signal.Signals, ...] = STOP_SIGNALS) -> Iterator[None]:
    """While in the block, ``signals`` (SIGTERM, SIGINT and SIGHUP) call ``request(signum)``
    (the work stops at its next safe point and cleans up); the previous handlers come
    back after."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        request(signum)

    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
