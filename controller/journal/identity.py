"""Who is running relctl, and whether a recorded process still runs (via psutil adapter)."""

from __future__ import annotations

import socket
from typing import Literal

from controller.adapters import processes
from controller.journal.records import Holder

Liveness = Literal["alive", "gone", "unknown"]


def current_holder() -> Holder:
    """This process as a lock holder / release operator."""
    me = processes.current_identity()
    return Holder(me.user, me.host, me.pid, me.started)


def liveness(holder: Holder) -> Liveness:
    """``alive`` if the very same process runs here; ``gone`` if it died or its pid was
    reused; ``unknown`` when it ran on another host, where this machine cannot look."""
    if holder.host != socket.gethostname():
        return "unknown"
    return "alive" if processes.same_process(holder.pid, holder.started) else "gone"
