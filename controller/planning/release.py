"""Plan a release as data: batches, and what the snapshot agent needs for each item."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import cast

from controller.agent.protocol import ItemSpec
from controller.models.manifest import ArtifactItem, ConfigItem, DataItem, Manifest


@dataclass(frozen=True)
class ReleasePlan:
    """What ``apply`` will do, computed before anything runs."""

    manifest: Manifest
    hosts: list[str]
    batches: list[list[str]]
    agent_items: list[ItemSpec]
    # Data items the controller snapshots once, on their server (``controller/data``).
    server_data: list[DataItem] = field(default_factory=list)

    @property
    def irreversible(self) -> list[str]:
        """Names of items after whose change no rollback is possible."""
        return [item.name for item in self.manifest.irreversible_items()]


def plan_release(manifest: Manifest, hosts: list[str]) -> ReleasePlan:
    """Batches (canary first), the agent's view of every item it snapshots on the hosts,
    and the data items the controller snapshots on their servers."""
    server = [item for item in manifest.items_of(DataItem) if item.on_controller]
    return ReleasePlan(
        manifest=manifest,
        hosts=hosts,
        batches=manifest.strategy.batches(hosts),
        agent_items=[agent_item(item) for item in manifest.items if item not in server],
        server_data=server,
    )


def agent_item(item: ConfigItem) -> ItemSpec:
    """The fields of ``item`` the host agent reads (``protocol.ItemSpec``), as JSON values."""
    data = item.model_dump(mode="json", exclude_none=True)
    if isinstance(item, ArtifactItem):
        data.pop("source", None)  # a controller-side path; the agent never needs it
    # model_dump(mode="json") of the item models gives exactly ItemSpec's fields
    return cast(ItemSpec, {key: str(value) if isinstance(value, PurePosixPath) else value
                           for key, value in data.items()})


def version_from_link(target: str | None) -> str | None:
    """The release version a ``current`` symlink target names (``releases/1.1.0``)."""
    return PurePosixPath(target).name if target else None
