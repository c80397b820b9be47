"""The replication methods by name: ``ContinuityPlan.replication`` picks one, and every
caller reaches the plan's through ``replication_of`` (the plan's context knows none)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from controller.engine.continuity.litestream import LitestreamReplication
from controller.engine.continuity.pg_streaming import PostgresReplication
from controller.engine.continuity.replication import CopyReplication, Replication
from controller.errors import ContinuityError
from controller.journal import ContinuityRecord

if TYPE_CHECKING:
    from controller.engine.continuity.context import Continuity

REPLICATIONS: dict[str, Callable[[], Replication]] = {
    "copy": CopyReplication, "litestream": LitestreamReplication,
    "postgresql": PostgresReplication}
"""The replication methods, by the name ``ContinuityPlan.replication`` gives."""


def replication_of(ctx: Continuity) -> Replication:
    """How the plan's data reaches the backup site (copy, litestream or postgresql)."""
    return REPLICATIONS[ctx.plan.replication]()


def replicate(ctx: Continuity) -> ContinuityRecord:
    """Replicate the writer's data to the backup site and record it (RPO counts from
    it): a copy, Litestream set up and checked, or the standbys checked."""
    if not ctx.plan.data:
        raise ContinuityError("the continuity plan declares no data to replicate")
    return replication_of(ctx).replicate(ctx)
