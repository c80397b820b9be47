"""What every part of continuity shares: the plan and where it came from, the
environment (inventory, ansible.cfg, runs and state folders), the journal, progress and
the notice channels. No host is reached from here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.engine.continuity.records import Progress, ReplicaRecord
from controller.engine.environment import Environment
from controller.journal import Journal, ReleaseRecord
from controller.journal.records import ContinuityKind
from controller.manifest_loader import (
    ConfigError,
    Problem,
    YamlDocument,
    check_as_released,
    line_of,
    load_manifest,
)
from controller.models.continuity import ContinuityPlan
from controller.models.manifest import Manifest
from controller.notify import notify_event


@dataclass
class Services:
    """The plan with its journal, environment and progress."""

    plan: ContinuityPlan
    plan_path: Path
    env: Environment
    journal: Journal
    progress: Progress = lambda _msg: None
    document: YamlDocument | None = None  # the plan's lines, for errors found later

    def begin(self, kind: ContinuityKind, detail: dict[str, Any]) -> int:
        """Journal that a replication, failover, failback or drill of this plan starts;
        the record names the plan (``apply`` finds the plan that covers a release by it)."""
        return self.journal.begin_continuity(kind, self.plan.service, self.plan.environment,
                                             {"plan": str(self.plan_path.resolve()), **detail})

    def refuse(self, loc: tuple[str | int, ...], message: str, hint: str | None = None
               ) -> ConfigError:
        """An error naming the plan's file, the line of ``loc`` and the field."""
        line = line_of(self.document, loc) if self.document else None
        return ConfigError([Problem(str(self.plan_path), line, ".".join(map(str, loc)),
                                    message)], hint=hint)

    def last_replica(self) -> ReplicaRecord | None:
        """The newest successful replication of the plan's service and environment."""
        found = self.journal.last_replication(self.plan.service, self.plan.environment)
        return ReplicaRecord.of(found) if found else None

    def last_good(self) -> ReleaseRecord | None:
        return self.journal.last_good_release(self.plan.service, self.plan.environment)

    def release_manifest(self, record: ReleaseRecord) -> Manifest:
        """The manifest of release ``record``, as it was when it was released."""
        return check_as_released(load_manifest(Path(record.manifest_path)), record,
                                 "restore the manifest as released, or release again")

    def announce(self, event: Any, reason: str) -> None:
        """Tell the plan's channels (never fails the failover or failback)."""
        plan = self.plan
        contact = plan.contacts[0].channel if plan.contacts else "the operations team"
        notify_event(plan.notify, event, {"service": plan.service,
                                          "environment": plan.environment,
                                          "reason": reason, "contact": contact},
                     self.journal)

    def close(self) -> None:
        """Close the ssh masters the work opened."""
        self.env.close_connections()
