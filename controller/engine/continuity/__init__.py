"""Business continuity on real hosts: replicate, fail over, fail back.

    context       ``Continuity``: a plan's three parts together --
      services    the plan, journal, environment, progress, notices (no host reached)
      site        topology, the LB, probes, playbooks and testinfra on the hosts
      site_data   relctl's own SQLite copies (online backup, sha256-checked)
    replication   the ``Replication`` protocol and relctl's copies (SQLite); with
                  litestream (Litestream) and pg_streaming (PostgreSQL standbys), chosen
                  by name in methods
    loadbalancer  the ``LoadBalancer`` protocol and HAProxy's runtime API behind it
    failover      newest data on the backups -> backups ready -> LB switch (no reload)
                  -> verify -> persist
    failback      data captured -> primaries deployed, data back -> LB back -> catch-up
                  -> replication resumed
    records       typed figures (failover, failback, drill) and the step runner
"""

from controller.engine.continuity.context import PLAN_HINT, Continuity, Verified, load_plan
from controller.engine.continuity.failback import failback
from controller.engine.continuity.failover import failover
from controller.engine.continuity.loadbalancer import LOAD_BALANCERS, LoadBalancer, lb_for
from controller.engine.continuity.methods import REPLICATIONS
from controller.engine.continuity.records import (
    DrillReport,
    FailbackFigures,
    FailoverFigures,
    Outcome,
    ReplicaRecord,
    rounded,
)
from controller.engine.continuity.replication import read_tables

__all__ = [
    "LOAD_BALANCERS",
    "PLAN_HINT",
    "REPLICATIONS",
    "Continuity",
    "DrillReport",
    "FailbackFigures",
    "FailoverFigures",
    "LoadBalancer",
    "Outcome",
    "ReplicaRecord",
    "Verified",
    "failback",
    "failover",
    "lb_for",
    "load_plan",
    "read_tables",
    "rounded",
]
