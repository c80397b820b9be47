"""Data items that live on their own server (PostgreSQL): the controller snapshots each
one once per release, beside the hosts' snapshots, and restores it first on a rollback
(the previous release's code must find the previous data when it starts again).

Each dump is an object of the controller's snapshot store (named by its sha256, kept and
dropped by the same retention as the hosts' objects); the journal holds one row per item
under the database's address (``postgresql://user@host:port/db``, never a password),
with the dump's logical digest and the server's version. A restore is verified against
that digest in the same run.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.adapters.snapshot_store import ObjectStore
from controller.data import DataEngine, engine_for
from controller.errors import RelctlError
from controller.journal import Journal
from controller.models.items import DataItem


class DataSnapshotError(RelctlError):
    """A database's snapshot is missing, damaged, or its restore does not verify."""


@dataclass(frozen=True)
class ServerData:
    """The server-side data items of one release."""

    journal: Journal
    release_id: int
    items: list[DataItem]
    store: ObjectStore
    scratch: Path  # where dumps are written before they move into the store

    def take(self) -> None:
        """Dump every database with its logical digest; journal each as verified."""
        self.scratch.mkdir(parents=True, exist_ok=True)
        for item in self.items:
            with tempfile.TemporaryDirectory(prefix="dump-", dir=self.scratch) as folder:
                capture = _engine(item).capture(Path(folder))
                size = capture.dump.stat().st_size
                sha = self.store.put_file(capture.dump)
            entry = {"kind": "data", "engine": item.engine, "object": sha, "bytes": size,
                     "digest": capture.digest, "schema": capture.schema,
                     "server_version": capture.server_version,
                     "seconds": round(capture.seconds, 3)}
            self.journal.add_snapshot(self.release_id, host=item.location, item=item.name,
                                      kind="data", path=self.store.path(sha), sha256=sha,
                                      size_bytes=size, meta=entry, verified=True)

    def restore(self) -> dict[str, str]:
        """Restore every database from its dump and check its digest; item -> how."""
        done = {}
        for item in self.items:
            entry = dump_entry(self.journal, self.release_id, item)
            if entry is None:
                raise DataSnapshotError(f"no snapshot of {item.name} ({item.location}) in "
                                        f"release {self.release_id}")
            sha = str(entry["object"])
            if not self.store.intact(sha):
                raise DataSnapshotError(f"the dump of {item.name} is missing or fails its "
                                        f"sha256 ({self.store.path(sha)})")
            engine = _engine(item)
            kept = keeps_live_data(item, entry, engine)
            if kept:
                done[item.name] = kept
                continue
            engine.restore(self.store.path(sha))
            if engine.digest() != entry["digest"]:
                raise DataSnapshotError(f"{item.name} ({item.location}) does not match its "
                                        "snapshot's logical digest after the restore")
            done[item.name] = "restored"
        return done


def keeps_live_data(item: DataItem, entry: dict[str, Any], engine: DataEngine) -> str | None:
    """Why a rollback leaves ``item``'s data as it is now (None: it restores the dump):
    nothing written since, ``on_rollback: keep``, or no migration ran (the schema is the
    snapshot's, so every write since stays live)."""
    policy = item.on_rollback
    if engine.digest() == entry["digest"]:
        return "unchanged"
    if policy == "keep":
        return "kept (on_rollback: keep)"
    if policy is None and entry.get("schema") and engine.schema_digest() == entry["schema"]:
        return "kept (schema unchanged: no migration ran)"
    return None


def check_databases(items: list[DataItem], progress: Callable[[str], None]) -> None:
    """Log in to every database before anything is touched (clear error otherwise)."""
    for item in items:
        version = _engine(item).check()
        progress(f"{item.name}: {item.location} answers (PostgreSQL {version})")


def dump_entry(journal: Journal, release_id: int, item: DataItem) -> dict[str, Any] | None:
    """The journal's entry of ``item``'s verified dump in the release, or None."""
    rows = [r for r in journal.snapshots(release_id, item.location)
            if r.item == item.name and r.verified and not r.pruned]
    return dict(rows[-1].meta) if rows else None


def _engine(item: DataItem) -> DataEngine:
    engine = engine_for(item)
    assert engine is not None, "only server-side data items are planned here"
    return engine
