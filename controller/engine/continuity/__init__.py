"""Business continuity on real hosts: replicate, fail over, fail back.

    context       a plan bound to its inventory, LB and journal: topology, probes,
                  replication (SQLite online backup, sha256-checked), deploys, testinfra
    loadbalancer  the ``LoadBalancer`` protocol and HAProxy's runtime API behind it
    failover      backups ready -> replica -> LB switch (no reload) -> verify -> persist
    failback      data captured -> primaries deployed and loaded -> LB back -> catch-up
    records       typed figures (failover, failback, drill) and the step runner
"""

from controller.engine.continuity.context import PLAN_HINT, Continuity, Verified, load_plan
from controller.engine.continuity.failback import failback
from controller.engine.continuity.failover import failover
from controller.engine.continuity.loadbalancer import LOAD_BALANCERS, LoadBalancer, lb_for
from controller.engine.continuity.records import (
    DrillReport,
    FailbackFigures,
    FailoverFigures,
    Outcome,
    ReplicaRecord,
    rounded,
)
from controller.engine.continuity.replication import REPLICATIONS, read_tables

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
