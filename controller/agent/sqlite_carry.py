#!/usr/bin/env python3
"""Data-aware rollback of an SQLite database, on the host: keep every acknowledged write.

Runs on the target after ``snapshot_agent.py`` (stdlib only). A rollback decides per data
item, by ``on_rollback`` (the manifest's words) and by the schema:

    keep       the live database is not touched (nothing written since is lost)
    (default)  schema unchanged since the snapshot: keep; schema changed (a migration ran):
               restore the snapshot and carry into it every row written since
    restore    restore the snapshot and carry every row written since, whatever the schema
    discard    restore the snapshot and drop what was written since (listed, not kept)

A database nobody wrote to since the snapshot is left as it is (byte-identical).

The rows written since are found by SQLite itself: the snapshot copy is opened and the
live database attached read-only; per table of the snapshot (the old schema), rows are
keyed by the primary key (or rowid) and compared whole on the columns the old table
has. New keys are inserted, changed rows updated, vanished keys deleted, each in a
savepoint of its own: a row the old schema refuses (a constraint, a table the old
schema lacks) is listed with the reason, never silently dropped. Table and column names
come from the host's files: every one is quoted as an identifier, never interpolated.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sqlite3
import urllib.parse
from pathlib import Path
from typing import Any

if __name__ != "relctl_agent":  # on a host, protocol.py ran first in this namespace
    from controller.agent.protocol import CarriedRows

LISTED_MAX = 200  # rows listed per database in a reply (every one is counted)


def ident(name: str) -> str:
    """``name`` quoted as an SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def schema_digest(conn: sqlite3.Connection, schema: str = "main") -> str:
    """A digest of the schema (tables, indexes, views, triggers) and ``user_version``."""
    digest = hashlib.sha256()
    version = conn.execute(f"PRAGMA {schema}.user_version").fetchone()[0]
    digest.update(f"user_version={version}\n".encode())
    rows = conn.execute(f"SELECT type, name, tbl_name, coalesce(sql, '') FROM {schema}."
                        "sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name")
    for row in rows:
        digest.update("|".join(map(str, row)).encode() + b"\n")
    return digest.hexdigest()


def tables(conn: sqlite3.Connection, schema: str) -> list[str]:
    return [r[0] for r in conn.execute(
        f"SELECT name FROM {schema}.sqlite_master WHERE type = 'table' "
        "AND name NOT LIKE 'sqlite_%' ORDER BY name")]


def columns(conn: sqlite3.Connection, schema: str, table: str) -> tuple[list[str], list[str]]:
    """The table's columns, and its primary key columns (empty: keyed by rowid)."""
    info = conn.execute(f"PRAGMA {schema}.table_info({ident(table)})").fetchall()
    names = [row[1] for row in info]
    key = [row[1] for row in sorted(info, key=lambda r: r[5]) if row[5] > 0]
    return names, key


def plain(value: Any) -> Any:
    """A column value as JSON can carry it (blobs as hex)."""
    if isinstance(value, bytes):
        return {"hex": value.hex()}
    return value


class Carry:
    """The rows written since the snapshot, carried into (or dropped from) its copy."""

    def __init__(self, conn: sqlite3.Connection, discard: bool,
                 sources: dict[str, str] | None = None,
                 broken: dict[str, str] | None = None) -> None:
        self.conn = conn
        self.discard = discard
        self.sources = sources or {}  # table -> where its live rows are read (default live.T)
        self.broken = broken or {}  # table -> why its rows cannot be read in the old columns
        self.counts: dict[str, dict[str, int]] = {}
        self.listed: list[dict[str, Any]] = []
        self.not_carried = 0

    def note(self, table: str, op: str, outcome: str) -> None:
        per = self.counts.setdefault(table, {})
        per[f"{op}:{outcome}"] = per.get(f"{op}:{outcome}", 0) + 1

    def listing(self, table: str, op: str, row: dict[str, Any], reason: str) -> None:
        if len(self.listed) < LISTED_MAX:
            self.listed.append({"table": table, "op": op, "reason": reason,
                                "row": {k: plain(v) for k, v in row.items()}})

    def live(self, table: str) -> str:
        """Where ``table``'s live rows are read: the live table, or the rows the
        manifest's ``rollback_rows`` query made of the new schema."""
        return self.sources.get(table) or f"live.{ident(table)}"

    def live_columns(self, table: str) -> list[str]:
        if table in self.sources:
            cursor = self.conn.execute(f"SELECT * FROM {self.sources[table]} LIMIT 0")
            return [d[0] for d in cursor.description]
        return columns(self.conn, "live", table)[0]

    def table(self, table: str) -> None:
        if table in self.broken:
            self.skip_all(table, self.broken[table])
            return
        new_cols = self.live_columns(table)
        old_cols, key = columns(self.conn, "main", table)
        if not new_cols:  # the live database lost the table: the snapshot's rows stay
            self.note(table, "table", "absent-live")
            return
        keyed = key or ["rowid"]
        if not set(keyed) <= set(new_cols) and key:
            self.skip_all(table, "the primary key changed in the new schema")
            return
        common = [c for c in old_cols if c in new_cols and c not in keyed]
        self.carry_changed(table, keyed, common)
        self.carry_deleted(table, keyed)

    def carry_changed(self, table: str, keyed: list[str], common: list[str]) -> None:
        cols = [*keyed, *common]
        select = ", ".join(map(self.col, cols))
        query = (f"SELECT {select} FROM {self.live(table)} EXCEPT "
                 f"SELECT {select} FROM main.{ident(table)}")
        for values in self.conn.execute(query).fetchall():
            row = dict(zip(cols, values))
            exists = self.conn.execute(
                f"SELECT 1 FROM main.{ident(table)} WHERE {self.where(keyed)}",
                values[:len(keyed)]).fetchone()
            if exists:
                sets = ", ".join(f"{ident(c)} = ?" for c in common)
                sql = (f"UPDATE main.{ident(table)} SET {sets} WHERE {self.where(keyed)}"
                       if common else "")
                self.apply(table, "update", row, sql, [*values[len(keyed):],
                                                       *values[:len(keyed)]])
            else:
                names = ", ".join(map(self.col, cols))
                marks = ", ".join("?" for _ in cols)
                self.apply(table, "insert", row,
                           f"INSERT INTO main.{ident(table)} ({names}) VALUES ({marks})",
                           list(values))

    def carry_deleted(self, table: str, keyed: list[str]) -> None:
        select = ", ".join(map(self.col, keyed))
        match = " AND ".join(f"l.{self.col(c)} IS m.{self.col(c)}" for c in keyed)
        query = (f"SELECT {select} FROM main.{ident(table)} AS m WHERE NOT EXISTS "
                 f"(SELECT 1 FROM {self.live(table)} AS l WHERE {match})")
        for values in self.conn.execute(query).fetchall():
            self.apply(table, "delete", dict(zip(keyed, values)),
                       f"DELETE FROM main.{ident(table)} WHERE {self.where(keyed)}",
                       list(values))

    def skip_all(self, table: str, reason: str) -> None:
        if not columns(self.conn, "live", table)[0]:
            return
        cursor = self.conn.execute(f"SELECT * FROM live.{ident(table)}")
        names = [d[0] for d in cursor.description]
        for values in cursor.fetchall():
            self.not_carried += 1
            self.note(table, "row", "not-carried")
            self.listing(table, "insert", dict(zip(names, values)), reason)

    def apply(self, table: str, op: str, row: dict[str, Any], sql: str,
              args: list[Any]) -> None:
        if self.discard:
            self.note(table, op, "dropped")
            self.listing(table, op, row, "on_rollback: discard")
            return
        if not sql:
            self.note(table, op, "carried")
            return
        self.conn.execute("SAVEPOINT row")
        try:
            self.conn.execute(sql, args)
        except sqlite3.Error as error:
            self.conn.execute("ROLLBACK TO row")
            self.not_carried += 1
            self.note(table, op, "not-carried")
            self.listing(table, op, row, f"{type(error).__name__}: {error}")
        else:
            self.note(table, op, "carried")
        finally:
            self.conn.execute("RELEASE row")

    @staticmethod
    def col(name: str) -> str:
        return "rowid" if name == "rowid" else ident(name)

    def where(self, keyed: list[str]) -> str:
        return " AND ".join(f"{self.col(c)} IS ?" for c in keyed)

    def new_tables(self, derived: set[str]) -> None:
        """Tables only the new schema has: their rows cannot be carried, and are listed
        (unless the manifest says the table is derived from others: counted only)."""
        old = set(tables(self.conn, "main"))
        for table in tables(self.conn, "live"):
            if table in derived and table not in old:
                count = self.conn.execute(f"SELECT count(*) FROM live.{ident(table)}")
                self.counts.setdefault(table, {})["derived:not-carried"] = count.fetchone()[0]
            elif table not in old:
                self.skip_all(table, "the table does not exist in the snapshot's schema")


def carry_rows(live: Path, restored: Path, discard: bool,
               queries: dict[str, str | None] | None = None) -> CarriedRows:
    """Carry (or, ``discard``, list and drop) the rows ``live`` has gained, changed or lost
    since the snapshot into ``restored`` (a copy of the snapshot), in one transaction.

    ``queries`` (the manifest's ``rollback_rows``): per old table, a SELECT over the live
    (new) schema giving that table's rows in its old columns, run read-only on the live
    database; a table mapped to None is derived data of the new schema (not listed)."""
    queries = queries or {}
    conn = sqlite3.connect(f"file:{urllib.parse.quote(str(restored))}", uri=True,
                           isolation_level=None)
    conn.execute("ATTACH DATABASE ? AS live",
                 (f"file:{urllib.parse.quote(str(live))}?mode=ro",))
    sources: dict[str, str] = {}
    broken: dict[str, str] = {}
    for n, (table, query) in enumerate(sorted(queries.items())):
        try:
            if query:
                sources[table] = materialize(conn, live, n, query)
        except sqlite3.Error as error:  # the manifest's query: its rows are listed, not lost
            broken[table] = f"rollback_rows query for {table} failed: {error}"
    carry = Carry(conn, discard, sources, broken)
    try:
        conn.execute("BEGIN IMMEDIATE")
        for table in tables(conn, "main"):
            carry.table(table)
        carry.new_tables({t for t, q in queries.items() if not q})
        conn.execute("COMMIT")
        conn.execute("DETACH DATABASE live")
        conn.execute("PRAGMA main.wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return {"tables": carry.counts, "listed": carry.listed, "not_carried": carry.not_carried}


def materialize(conn: sqlite3.Connection, live: Path, n: int, query: str) -> str:
    """The rows of ``query`` run on a read-only connection to ``live``, copied into a
    temporary table of ``conn``; its name."""
    source = sqlite3.connect(f"file:{urllib.parse.quote(str(live))}?mode=ro", uri=True)
    try:
        source.execute("PRAGMA query_only = ON")
        cursor = source.execute(query)
        names = [d[0] for d in cursor.description or []]
        temp = f"temp.relctl_rows_{n}"
        conn.execute(f"CREATE TEMP TABLE relctl_rows_{n} "
                     f"({', '.join(ident(c) for c in names)})")
        marks = ", ".join("?" for _ in names)
        conn.executemany(f"INSERT INTO {temp} VALUES ({marks})", cursor)
        return temp
    finally:
        source.close()


def live_schema_same(live: Path, snapshot: Path) -> bool:
    """Whether the live database has the snapshot's schema (no migration ran)."""
    conn = sqlite3.connect(f"file:{urllib.parse.quote(str(snapshot))}?mode=ro", uri=True)
    try:
        conn.execute("ATTACH DATABASE ? AS live",
                     (f"file:{urllib.parse.quote(str(live))}?mode=ro",))
        return schema_digest(conn, "main") == schema_digest(conn, "live")
    finally:
        conn.close()


def private_copy(source: Path, folder: Path) -> Path:
    """A copy of ``source`` in ``folder`` under an unpredictable name, created exclusively
    (a link planted in the folder is never written through)."""
    name = f".relctl-restore-{secrets.token_hex(10)}"
    fd = os.open(str(folder / name), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                 0o600)
    with os.fdopen(fd, "wb") as out, source.open("rb") as src:
        for block in iter(lambda: src.read(1 << 20), b""):
            out.write(block)
    return folder / name
