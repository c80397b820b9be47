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

REPLICATIONS: dict[str, Callable[[Continuity], Replication]] = {
    "copy": lambda ctx: CopyReplication(ctx.site, ctx.data, ctx.services),
    "litestream": lambda ctx: LitestreamReplication(ctx.site, ctx.data, ctx.services),
    "postgresql": lambda ctx: PostgresReplication(ctx.site, ctx.services)}
"""The replication methods, by the name ``ContinuityPlan.replication`` gives; each gets
the parts of the plan's context it uses (PostgreSQL keeps no copies of its own)."""


def replication_of(ctx: Continuity) -> Replication:
    """How the plan's data reaches the backup site (copy, litestream or postgresql)."""
    return REPLICATIONS[ctx.plan.replication](ctx)


def replicate(ctx: Continuity) -> ContinuityRecord:
    """Replicate the writer's data to the backup site and record it (RPO counts from
    it): a copy, Litestream set up and checked, or the standbys checked."""
    if not ctx.plan.data:
        raise ContinuityError("the continuity plan declares no data to replicate")
    return replication_of(ctx).replicate()
