"""Data items that live on their own server (PostgreSQL): the controller snapshots each
one once per release, beside the hosts' snapshots, and restores it first on a rollback
(the previous release's code must find the previous data when it starts again).

Each dump is an object of the controller's snapshot store (named by its sha256, kept and
dropped by the same retention as the hosts' objects); the journal holds one row per item
under the database's address (``postgresql://user@host:port/db``, never a password),
with the dump's logical digest, the digests of its schema and of its rows, and the
server's version. A restore is verified against them in the same run.

A rollback keeps every acknowledged write, as the host agent does for SQLite
(``controller/agent/sqlite_carry.py``), by the item's ``on_rollback``: nothing written
since, or the schema is the snapshot's (no migration ran): the data stays live; ``keep``:
never restored; otherwise the dump is restored and every row written since carried into
it (``discard``: dropped, and listed), in one transaction that holds off every writer
(``controller/data/pg_carry.py``). What it did is journaled as the phase ``rollback:data``
and joins the hosts' reports in the rollback phase (``add_database_reports``): the
output, ``--json``, ``show``, the release report and the catch-up report list it.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.adapters.snapshot_store import ObjectStore
from controller.data import DataEngine, engine_for
from controller.data.engine import CarryRequest
from controller.errors import RelctlError
from controller.journal import Journal
from controller.models.items import ConfigItem, DataItem
from controller.reports.catch_up import DataReports

PHASE = "rollback:data"
"""The journal phase of the databases' part of a rollback (its detail: ``data``)."""


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
                     "rows": capture.rows, "server_version": capture.server_version,
                     "seconds": round(capture.seconds, 3)}
            self.journal.add_snapshot(self.release_id, host=item.location, item=item.name,
                                      kind="data", path=self.store.path(sha), sha256=sha,
                                      size_bytes=size, meta=entry, verified=True)

    def restore(self) -> dict[str, str]:
        """Roll every database back without losing a write (kept live, or restored from
        its dump with the rows written since carried into it), checked against the
        snapshot; item -> how. Each item's report is journaled in the phase
        ``rollback:data`` (``database_reports``)."""
        phase = self.journal.begin_phase(self.release_id, PHASE)
        started = time.monotonic()
        done: dict[str, str] = {}
        reports: DataReports = {}
        try:
            for item in self.items:
                report = self._restore_item(item)
                reports.setdefault(item.location, {})[item.name] = report
                done[item.name] = how(report)
        except BaseException as error:
            self.journal.end_phase(phase, "failed", {"data": reports,
                                                     "error": str(error)[:1000]},
                                   seconds=time.monotonic() - started)
            raise
        self.journal.end_phase(phase, "ok", {"data": reports},
                               seconds=time.monotonic() - started)
        return done

    def _restore_item(self, item: DataItem) -> dict[str, Any]:
        """One database back; what became of it, as the host agent reports an SQLite
        item (decision, why, digest; after a restore: tables, listed, not_carried)."""
        entry = dump_entry(self.journal, self.release_id, item)
        if entry is None:
            raise DataSnapshotError(f"no snapshot of {item.name} ({item.location}) in "
                                    f"release {self.release_id}")
        sha = str(entry["object"])
        if not self.store.intact(sha):
            raise DataSnapshotError(f"the dump of {item.name} is missing or fails its "
                                    f"sha256 ({self.store.path(sha)})")
        engine = _engine(item)
        now = engine.digests()
        kept = keeps_live_data(item, entry, now)
        if kept is not None:
            return {"decision": kept[0], "why": kept[1], "digest": now[0]}
        migrated = not entry.get("schema") or now[1] != entry["schema"]
        discard = item.on_rollback == "discard"
        # the manifest's rollback_rows read the new schema: only when a migration ran
        queries = dict(item.rollback_rows or {}) if migrated else {}
        carried = engine.roll_back(self.store.path(sha), CarryRequest(
            discard=discard, queries=queries, rows_digest=str(entry.get("rows") or "")))
        digest, schema = engine.digests()
        if entry.get("schema") and schema != entry["schema"]:
            raise DataSnapshotError(f"{item.name} ({item.location}) does not have its "
                                    "snapshot's schema after the restore")
        untouched = not carried.sequences and not any(
            key.endswith((":carried", ":dropped")) for per in carried.tables.values()
            for key in per)
        if untouched and digest != entry["digest"]:
            raise DataSnapshotError(f"{item.name} ({item.location}) does not match its "
                                    "snapshot's logical digest after the restore")
        if discard:
            why = "on_rollback: discard: the rows written since are dropped (listed)"
        elif migrated:
            why = ("the schema changed since the snapshot: the snapshot is restored and "
                   "every row written since carried into it")
        else:
            why = ("on_rollback: restore: the snapshot is restored and every row written "
                   "since carried into it")
        return {"decision": "discarded" if discard else "carried", "why": why,
                "digest": digest, "tables": carried.tables, "listed": carried.listed,
                "not_carried": carried.not_carried, "sequences": carried.sequences,
                "locked_s": carried.locked_s}


def how(report: dict[str, Any]) -> str:
    """One item's report in a few words (the rollback phase's ``databases``)."""
    decision = str(report.get("decision"))
    outcomes: dict[str, int] = {}
    for per in report.get("tables", {}).values():
        for key, count in per.items():
            outcome = key.rsplit(":", 1)[-1]
            outcomes[outcome] = outcomes.get(outcome, 0) + count
    if decision == "discarded":
        return f"discarded ({outcomes.get('dropped', 0)} rows dropped)"
    if decision == "carried":
        return (f"carried ({outcomes.get('carried', 0)} rows carried, "
                f"{report.get('not_carried', 0)} not carried)")
    return decision


def database_reports(journal: Journal, release_id: int) -> DataReports:
    """What the latest rollback of the release did with its databases (location -> item
    -> report), from its ``rollback:data`` phase; empty when it did not get that far."""
    phases = journal.phases(release_id)
    since = max((n for n, p in enumerate(phases) if p.name == "rollback"), default=-1)
    data = next((p.detail.get("data") for p in reversed(phases[since + 1:])
                 if p.name == PHASE), None)
    return dict(data) if isinstance(data, dict) else {}


def add_database_reports(detail: dict[str, Any], journal: Journal, release_id: int,
                         seconds: float, items: Sequence[ConfigItem]) -> None:
    """Put the databases' reports beside the hosts' in a rollback phase's ``detail``
    (``data``, ``writes_refused_s``). Writes to a database were refused from the stop of
    the services (before its restore) to their start (by the hosts' restore): at most
    ``seconds``, the whole restore; with no service among the release's ``items`` to
    stop, while its tables were locked (the restore's transaction)."""
    reports = database_reports(journal, release_id)
    if not reports:
        return
    services_stopped = any(item.kind == "service" for item in items)
    detail["data"] = {**(detail.get("data") or {}), **reports}
    refused = dict(detail.get("writes_refused_s") or {})
    for location, per_item in reports.items():
        locked = [float(r["locked_s"]) for r in per_item.values() if r.get("locked_s")]
        refused[location] = (round(seconds, 3) if services_stopped else
                             round(max(locked), 3) if locked else None)
    detail["writes_refused_s"] = refused


def keeps_live_data(item: DataItem, entry: dict[str, Any], now: tuple[str, str]
                    ) -> tuple[str, str] | None:
    """Why a rollback leaves ``item``'s data as it is (decision, why), or None: it restores
    the dump. ``now``: the data's logical digest and schema digest. Nothing written since,
    ``on_rollback: keep``, or no migration ran (the schema is the snapshot's, so every
    write since stays live)."""
    digest, schema = now
    if digest == entry["digest"]:
        return "unchanged", "nothing was written since the snapshot: the data is left as it is"
    if item.on_rollback == "keep":
        return "kept", "on_rollback: keep"
    if item.on_rollback is None and entry.get("schema") and schema == entry["schema"]:
        return "kept", "the schema is the snapshot's: no migration ran, the data stays live"
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
