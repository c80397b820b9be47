"""The rollback plan as data: how each item returns to its previous stable state."""

from __future__ import annotations

from dataclasses import dataclass

from controller.models.manifest import DataItem, Manifest


@dataclass(frozen=True)
class RollbackItem:
    """How one configuration item returns to its previous stable state."""

    item: str
    kind: str
    restore: str
    snapshot: str
    point_of_no_return: bool


RESTORE_HOW: dict[str, str] = {
    "file": "bytes, mode and owner put back from the snapshot copy",
    "directory": "tree replaced by the snapshot tar (owners and modes kept)",
    "artifact": "release tree restored from the snapshot tar: `current` points back to "
                "{previous}",
    "package": "previous version reinstalled with {manager}, as the snapshot recorded it",
    "service": "stopped before the restore, then returned to the state the snapshot "
               "recorded (running or not)",
    "data": "SQLite online-backup copy restored (stale -wal/-shm files removed)",
    "data:postgresql": "the services stopped; kept live when no migration ran, else the "
                       "pg_dump restored in one transaction (writers held off, every object "
                       "dropped first), checked against its logical digest, every row written "
                       "since carried into it (what does not fit is listed); then the hosts",
}
PAYLOAD_SUFFIX = {"file": ".file", "directory": ".tar", "artifact": ".tar", "data": ".db"}
NO_RETURN = ("NOT rolled back once converted: relctl refuses the rollback; roll forward "
             "with a fixed release (the snapshot allows a manual restore, losing later writes)")


def rollback_items(manifest: Manifest, store: str,
                   versions: dict[str, str]) -> list[RollbackItem]:
    """How every item is restored from the snapshot taken before the apply."""
    known = sorted(set(versions.values()))
    previous = f"releases/{', '.join(known)}" if known else "the previous release"
    rows = []
    for item in manifest.items:
        suffix = PAYLOAD_SUFFIX.get(item.kind)  # packages, services: state in index.json
        payload = f"{item.name}{suffix}" if suffix else "index.json"
        snapshot = f"{store}/<release-id>/<host>/bundle/{payload}"
        key: str = item.kind
        if isinstance(item, DataItem) and item.on_controller:  # on its server
            key, snapshot = f"data:{item.engine}", f"{store}/objects (a dump of {item.location})"
        how = RESTORE_HOW[key].format(previous=previous, manager=getattr(item, "manager", ""))
        final = isinstance(item, DataItem) and not item.reversible
        rows.append(RollbackItem(item.name, item.kind, NO_RETURN if final else how, snapshot,
                                 final))
    return rows
