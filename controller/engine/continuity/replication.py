"""How the plan's data reaches the backup site: one ``Replication`` per method, chosen by
the plan (``ContinuityPlan.replication``) through ``REPLICATIONS`` (``methods.py``);
callers never branch on the method.

    copy        relctl's own copy: SQLite's online backup API on the writer, fetched,
                sha256-checked, loaded into the backups; RPO counts from the copy
    litestream  Litestream streams the writer's WAL to the plan's replica; failover
                restores the newest state on the backups; RPO counts from the newest
                replicated transaction (``litestream.py``)
    postgresql  a streaming standby per backup host, promoted at failover; RPO counts
                from its last replayed commit (``pg_streaming.py``)

Every replication (and every Litestream restore) is a journal record of kind
``replication``: what a failover loads and what its RPO counts from.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from controller.engine.continuity.records import ReplicaRecord
from controller.engine.continuity.services import Services
from controller.engine.continuity.site import Site
from controller.engine.continuity.site_data import SiteData
from controller.errors import RelctlError
from controller.journal import ContinuityRecord
from controller.models.rows import TableRows


class Replication(Protocol):
    """One way of keeping the backup site's data recent."""

    method: str

    def replicate(self) -> ContinuityRecord:
        """Copy, or set up and check, the replication; journaled (``replication``)."""
        ...

    def restore(self, hosts: list[str], tag: str, *, only_missing: bool
                ) -> tuple[ReplicaRecord | None, str]:
        """Put the newest replicated data on ``hosts``; the replica used, and what was
        done (for the timeline)."""
        ...

    def resume(self) -> str | None:
        """Replication from the writer again, after a failback."""
        ...

    def settle(self) -> str | None:
        """After a failover's switch: what the method still owes the backup site (the
        other standbys following the promoted one), or None."""
        ...

    def stop(self) -> str:
        """Stop whatever runs on the writer for it."""
        ...

    def catch_up_tables(self, store: Path, tag: str
                        ) -> tuple[dict[str, TableRows], dict[str, TableRows]]:
        """Failback: the old primary's tables and the backup site's (before either
        changes), for the catch-up report."""
        ...

    def final_copy(self, store: Path, tag: str, hold: Callable[[], None]
                   ) -> dict[str, TableRows] | None:
        """Failback, just before ``bring_back``: a method that copies the backup site's
        data calls ``hold`` (from then on no request reaches the backup site) and copies
        it once more, the copy ``bring_back`` loads; its tables. None: the method moves
        every write itself (PostgreSQL's switchover) and nothing is held."""
        ...

    def bring_back(self, store: Path, tag: str) -> str:
        """Failback: the backup site's data onto the primaries, which serve it next."""
        ...


@dataclass(frozen=True)
class SqliteSites:
    """A method for SQLite data, with the site, relctl's copies of its data and the
    shared services. Its failback: consistent copies of the old primary's and the
    backup's databases (the catch-up report compares them), the backup's loaded into
    the primaries."""

    site: Site
    data: SiteData
    services: Services

    def settle(self) -> str | None:
        """Nothing: each backup serves its own copy of the data."""
        return None

    def catch_up_tables(self, store: Path, tag: str
                        ) -> tuple[dict[str, TableRows], dict[str, TableRows]]:
        writer, active = self.site.writer(), self.site.backups[0]
        old = self._captured(writer, store / "old-primary", f"{tag}-old")
        self.services.progress(f"old primary data captured on {writer}")
        return old, self._captured(active, store / "backup", f"{tag}-backup")

    def final_copy(self, store: Path, tag: str, hold: Callable[[], None]
                   ) -> dict[str, TableRows]:
        """The backup's data copied again once no write reaches it: a payment it
        acknowledged after the first copy (while the primaries were deployed) is loaded
        with the rest, not left behind on the backup."""
        hold()
        active = self.site.backups[0]
        tables = self._captured(active, store / "backup", f"{tag}-final")
        self.services.progress(f"backup data captured again on {active}, writes held")
        return tables

    def _captured(self, host: str, folder: Path, tag: str) -> dict[str, TableRows]:
        """A consistent copy of ``host``'s data in ``folder`` (``SiteData.capture``), as
        tables."""
        return bundle_tables(folder / host / "bundle", self.data.capture(host, folder, tag))

    def bring_back(self, store: Path, tag: str) -> str:
        self.data.load(self.site.primaries, store / "backup" / self.site.backups[0] / "bundle",
                 f"{tag}-load")
        return f"backup data loaded on {', '.join(self.site.primaries)}"


def bundle_tables(bundle: Path, index: dict[str, Any]) -> dict[str, TableRows]:
    """Every table of a bundle's SQLite databases."""
    tables: dict[str, TableRows] = {}
    for meta in index.values():
        if meta.get("payload"):
            tables.update(read_tables(bundle / meta["payload"]))
    return tables


def replica_tables(replica: ReplicaRecord | None) -> dict[str, TableRows] | None:
    """The tables of the data a failover restored (None when relctl holds no copy)."""
    bundle = replica.folder if replica is not None else None
    if bundle is None or not (bundle / "index.json").exists():
        return None
    return bundle_tables(bundle, json.loads((bundle / "index.json").read_text()))


def read_tables(path: Path) -> dict[str, TableRows]:
    """Every table of a SQLite file, rows sorted (read-only)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        names = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        tables = {}
        for name in names:
            cursor = conn.execute(f'SELECT * FROM "{name}"')
            columns = [c[0] for c in cursor.description]
            tables[name] = TableRows(columns, sorted(tuple(r) for r in cursor.fetchall()))
        return tables
    finally:
        conn.close()


class CopyReplication(SqliteSites):
    """relctl's own copies, taken when ``relctl replicate`` runs (``--every``)."""

    method = "copy"

    def replicate(self) -> ContinuityRecord:
        source, names = self.site.writer(), [d.name for d in self.site.plan.data]
        record = self.services.begin("replication", {
            "method": self.method, "source": source, "items": names, "targets": self.site.backups})
        store = self.services.env.state_dir / "replicas" / str(record)
        captured_at = datetime.now(UTC)
        try:
            index = self.data.capture(source, store, f"rep{record}")
            self.services.progress(f"replica of {', '.join(names)} taken on {source}, "
                                   "sha256 checked")
            self.data.load(self.site.backups, store / source / "bundle", f"rep{record}")
        except RelctlError as error:
            self.services.journal.end_continuity(record, "failed", {"error": error.message})
            raise
        self.services.progress(f"replica loaded on {', '.join(self.site.backups)}")
        return self.services.journal.end_continuity(record, "ok", {
            "captured_at": captured_at.isoformat(), "bundle": str(store / source / "bundle"),
            "loaded_on": self.site.backups,
            "sha256": {n: m.get("sha256") for n, m in index.items()},
            "digest": {n: m.get("digest") for n, m in index.items()},
            "bytes": sum(int(m.get("bytes", 0)) for m in index.values())})

    def restore(self, hosts: list[str], tag: str, *, only_missing: bool
                ) -> tuple[ReplicaRecord | None, str]:
        replica = self.services.last_replica()
        if replica is None or replica.folder is None or replica.method != self.method:
            return None, "no replica to load"
        missing = [h for h in hosts if h not in replica.loaded_on] if only_missing else hosts
        if not missing:
            return replica, (f"replica {replica.id} of {replica.captured_iso} already on "
                             f"{', '.join(hosts)}")
        self.data.load(missing, replica.folder, tag)
        return replica, (f"replica {replica.id} of {replica.captured_iso} loaded on "
                         f"{', '.join(missing)}")

    def resume(self) -> str | None:
        return None  # the next relctl replicate copies from the writer again

    def stop(self) -> str:
        return "copies run only when relctl replicate does: nothing to stop"


def every_db(dbs: dict[str, dict[str, Any]], key: str,
           pick: Callable[[list[float]], float]) -> float | None:
    """``pick`` of every database's ``key`` (None when any database lacks it)."""
    values = [d.get(key) for d in dbs.values()]
    known = [float(v) for v in values if v is not None]
    return pick(known) if known and len(known) == len(values) else None


def iso(epoch: float | None) -> str | None:
    return datetime.fromtimestamp(epoch, UTC).isoformat() if epoch is not None else None
