"""The replication methods by name: ``ContinuityPlan.replication`` picks one."""

from __future__ import annotations

from collections.abc import Callable

from controller.engine.continuity.litestream import LitestreamReplication
from controller.engine.continuity.pg_streaming import PostgresReplication
from controller.engine.continuity.replication import CopyReplication, Replication

REPLICATIONS: dict[str, Callable[[], Replication]] = {
    "copy": CopyReplication, "litestream": LitestreamReplication,
    "postgresql": PostgresReplication}
"""The replication methods, by the name ``ContinuityPlan.replication`` gives."""


def replication_for(method: str) -> Replication:
    """The replication of a plan's ``replication`` method."""
    return REPLICATIONS[method]()
