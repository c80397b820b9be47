"""Data-aware rollback of a PostgreSQL database: keep every acknowledged write.

What ``controller/agent/sqlite_carry.py`` does for an SQLite file on a host, done by the
controller for a PostgreSQL database, in the restore's one transaction on one connection
(``PostgresEngine.roll_back``):

1. every table of the database's own schemas is locked ``IN EXCLUSIVE MODE``: readers go
   on, writers wait (and fail once the tables they waited for are dropped), so no write
   lands between the reading of the live rows and the commit;
2. the live rows are copied into temporary tables of the session (``ON COMMIT DROP``):
   each table's rows (a column whose type the database defines itself, an enum or a
   domain, as text, so that dropping the type does not drop the copy's column), and the
   rows each of the manifest's ``rollback_rows`` queries gives, run read-only (a
   savepoint in READ ONLY mode: the query cannot write);
3. the dump is restored (``postgresql.py``);
4. per table of the old schema, rows are keyed by the primary key (without one, compared
   as a multiset of rows) and compared whole on the old table's columns, each live value
   read through the old column's type; new keys are inserted with their ids, changed rows
   updated, vanished keys deleted: parents before children (deletes the other way), each
   table's batch in a savepoint and, when the batch fails, each row in its own. A row the
   old schema refuses (a constraint, a table it lacks, a value its type cannot hold) is
   listed with the reason, never silently dropped; one refused for a missing parent is
   tried again once the others are in;
5. every sequence goes up to the highest of its snapshot position, its live position and
   its column's largest value: no id is ever handed out twice.

``rollback_rows``: old table -> a SELECT over the new schema giving that table's rows in
its old columns; null: the table's rows are derived (a table only the new schema has is
counted, not listed; a table the old schema has keeps the snapshot's rows, its differing
live rows counted: a schema version, a cache). A migration tool's own table
(``SCHEMA_HISTORY``: alembic_version, django_migrations, flyway_schema_history, ...) is
derived unless ``rollback_rows`` gives it a query. ``discard``: nothing is carried; every
difference is listed, dropped.

Table, column and type names come from the database's catalog and are quoted as
identifiers (``psycopg.sql``; types as ``format_type`` spells them); values travel as
parameters, as text cast to the old column's type.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg import sql

from controller.data.engine import LISTED_MAX, CarryReport, CarryRequest
from controller.data.pg_catalog import (
    TYPES,
    Change,
    Column,
    Connection,
    Rows,
    Sequence,
    Table,
    assign_columns,
    dependency_order,
    describe,
    handed_out,
    insert_row,
    match_key,
    plain_label,
    read_live_as_old,
    read_old,
    sequences,
    tables,
)

# Where migration tools record which migrations ran: rows that describe the schema, so the
# snapshot's stay with the snapshot's schema (carried, they would claim the migration is
# still applied). A table of these names that ``rollback_rows`` maps to a query is carried.
SCHEMA_HISTORY = frozenset({
    "alembic_version", "django_migrations", "schema_migrations", "ar_internal_metadata",
    "flyway_schema_history", "databasechangelog", "databasechangeloglock",
    "knex_migrations", "knex_migrations_lock", "goose_db_version", "gorp_migrations",
    "__EFMigrationsHistory", "SequelizeMeta", "doctrine_migration_versions",
    "_sqlx_migrations", "__diesel_schema_migrations", "pgmigrations",
})
FOREIGN_KEY_VIOLATION = "23503"

# The database's own tables (what the restore drops and recreates), partitions through
# their parent, extensions' tables left out.


class PgCarry:
    """The rows written since the snapshot, read before the restore and carried into
    (or, ``discard``, dropped from) it after, on the restore's connection."""

    def __init__(self, conn: Connection, request: CarryRequest) -> None:
        self.conn = conn
        self.request = request
        self.queries = {plain_label(t): q for t, q in request.queries.items()}
        self.derived = {t for t, q in self.queries.items() if not q}
        self.live: dict[str, Rows] = {}  # live table -> its rows
        self.sources: dict[str, Rows] = {}  # old table -> the rows its query gave
        self.broken: dict[str, str] = {}  # old table -> why its query gave no rows
        self.positions: dict[str, int] = {}  # live sequence -> the last value handed out
        self.counts: dict[str, dict[str, int]] = {}
        self.listed: list[dict[str, Any]] = []
        self.not_carried = 0
        self.moved: dict[str, int] = {}
        self.retry: list[Change] = []
        self._temps = 0
        self._locked = 0.0

    # -- before the restore -------------------------------------------------------------

    def read_live(self, live: Mapping[str, Table]) -> None:
        """Copy the live rows and sequence positions (the tables are locked)."""
        self._locked = time.monotonic()
        for seq in sequences(self.conn):
            self.positions[seq.label] = handed_out(self.conn, seq)
        for name, query in sorted(self.queries.items()):
            if query:
                self._read_query(name, query)
        for name in sorted(live):
            self.live[name] = self._copy(live[name])

    def _temp(self) -> tuple[sql.Identifier, sql.Identifier]:
        """A new temporary table's name, and that name qualified."""
        self._temps += 1
        name = f"relctl_rows_{self._temps}"
        return sql.Identifier(name), sql.Identifier("pg_temp", name)

    def _copy(self, table: Table) -> Rows:
        bare, temp = self._temp()
        columns = sql.SQL(", ").join(
            sql.SQL("{}::text AS {}").format(sql.Identifier(c.name), sql.Identifier(c.name))
            if c.own_type else sql.Identifier(c.name) for c in table.columns)
        self.conn.execute(sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {}")
                          .format(bare, columns, table.ident))
        return Rows(temp, {c.name: "text" if c.own_type else c.type for c in table.columns})

    def _read_query(self, table: str, query: str) -> None:
        """Run the manifest's query read-only; its rows into a temporary table."""
        text = query.strip().rstrip(";").strip()
        bare, temp = self._temp()
        try:
            with self.conn.transaction():
                with self.conn.transaction():
                    self.conn.execute("SET TRANSACTION READ ONLY")
                    cursor = self.conn.execute(sql.SQL("SELECT * FROM ({}) AS q LIMIT 0")
                                               .format(sql.SQL(text)))
                    shape = [(c.name, int(c.type_code)) for c in cursor.description or []]
                kinds = {int(oid): (str(kind), bool(own)) for oid, kind, own in self.conn.execute(
                    TYPES, [[oid for _, oid in shape]])}
                types = {name: "text" if kinds[oid][1] else kinds[oid][0] for name, oid in shape}
                self.conn.execute(sql.SQL("CREATE TEMP TABLE {} ({}) ON COMMIT DROP").format(
                    bare, sql.SQL(", ").join(
                        sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(types[name]))
                        for name, _ in shape)))
                select = sql.SQL(", ").join(
                    sql.SQL("q.{}::text").format(sql.Identifier(name)) if types[name] == "text"
                    else sql.SQL("q.{}").format(sql.Identifier(name)) for name, _ in shape)
                with self.conn.transaction():
                    self.conn.execute("SET TRANSACTION READ ONLY")
                    self.conn.execute(sql.SQL("INSERT INTO {} SELECT {} FROM ({}) AS q").format(
                        temp, select, sql.SQL(text)))
        except psycopg.Error as error:  # the manifest's query: its rows are listed, not lost
            self.broken[table] = f"rollback_rows query for {table} failed: {describe(error)}"
            return
        self.sources[table] = Rows(temp, types)

    # -- after the restore --------------------------------------------------------------

    def carry(self) -> None:
        """Carry the rows into the restored snapshot (or drop and list them), then move
        every sequence past the ids handed out."""
        old = tables(self.conn)
        order = dependency_order(self.conn, old)
        deletes: dict[str, list[Change]] = {}
        for name in order:
            upserts, deletes[name] = self._diff(old[name])
            self._apply(upserts)
        for name in reversed(order):
            self._apply(deletes[name])
        self._apply_retries()
        self._new_tables(old)
        self._advance_sequences()

    def report(self) -> CarryReport:
        return CarryReport(self.counts, self.listed, self.not_carried, self.moved,
                           round(time.monotonic() - self._locked, 3))

    def _diff(self, table: Table) -> tuple[list[Change], list[Change]]:
        """The rows to insert or update, and to delete, to carry ``table``'s live rows
        into the restored snapshot (a derived table's are counted instead)."""
        name = table.label
        if name in self.broken:
            self._skip_all(name, self.broken[name])
            return [], []
        derived = self._derived(name)
        rows = (None if derived else self.sources.get(name)) or self.live.get(name)
        if rows is None:  # the live database lost the table: the snapshot's rows stay
            self._note(name, "table", "absent-live")
            return [], []
        writable = [c for c in table.columns if not c.generated and c.name in rows.types]
        if table.key and not set(table.key) <= set(rows.types):
            if derived:
                self._count_derived(name)
            else:
                self._skip_all(name, "the primary key changed in the new schema")
            return [], []
        try:
            with self.conn.transaction():
                changes = (self._diff_keyed(table, rows, writable) if table.key else
                           self._diff_rows(table, rows, writable))
        except psycopg.Error as error:
            if derived:
                self._count_derived(name)
            else:
                self._skip_all(name, f"the live rows do not read in the old columns: "
                                     f"{describe(error)}")
            return [], []
        if not derived:
            return changes
        differing = len(changes[0]) + len(changes[1])  # the snapshot's rows stay
        if differing:
            self.counts.setdefault(name, {})["derived:not-carried"] = differing
        return [], []

    def _derived(self, name: str) -> bool:
        """Whether ``name``'s rows are derived, not carried: mapped to null in
        ``rollback_rows``, or a migration tool's record of the schema (not named there)."""
        return name in self.derived or (name not in self.queries and
                                        name.rsplit(".", 1)[-1] in SCHEMA_HISTORY)

    def _diff_keyed(self, table: Table, rows: Rows, writable: list[Column]
                    ) -> tuple[list[Change], list[Change]]:
        key = [table.column(k) for k in table.key]
        common = [c for c in writable if c.name not in table.key]
        columns = [*key, *common]
        aliases = [sql.Identifier(f"c{n}") for n in range(len(columns))]
        found = sql.SQL(" AND ").join(
            sql.SQL("m.{} = CAST(d.{} AS {})").format(sql.Identifier(c.name), alias,
                                                      sql.SQL(c.type))
            for c, alias in zip(key, aliases, strict=False))
        changed = sql.SQL(
            "SELECT d.*, EXISTS (SELECT 1 FROM {table} AS m WHERE {found}) FROM ("
            "SELECT {live} FROM {source} AS l EXCEPT SELECT {old} FROM {table} AS m) AS d"
        ).format(table=table.ident, found=found, source=rows.source,
                 live=read_live_as_old(rows, columns, aliases),
                 old=read_old(columns, aliases))
        upserts = []
        for *values, exists in self.conn.execute(changed).fetchall():
            row = dict(zip([c.name for c in columns], values, strict=True))
            keys, rest = values[:len(key)], values[len(key):]
            if exists:
                statement = sql.SQL("UPDATE {} SET {} WHERE {}").format(
                    table.ident, assign_columns(common), match_key(key)) if common else None
                upserts.append(Change(table.label, "update", row, statement, [*rest, *keys]))
            else:
                upserts.append(Change(table.label, "insert", row,
                                      insert_row(table, columns), list(values)))
        vanished = sql.SQL("SELECT {old} FROM {table} AS m EXCEPT "
                           "SELECT {live} FROM {source} AS l").format(
            table=table.ident, source=rows.source, old=read_old(key, aliases[:len(key)]),
            live=read_live_as_old(rows, key, aliases[:len(key)]))
        deletes = [Change(table.label, "delete", dict(zip(table.key, values, strict=True)),
                          sql.SQL("DELETE FROM {} WHERE {}").format(table.ident,
                                                                    match_key(key)),
                          list(values))
                   for values in self.conn.execute(vanished).fetchall()]
        return upserts, deletes

    def _diff_rows(self, table: Table, rows: Rows, columns: list[Column]
                   ) -> tuple[list[Change], list[Change]]:
        """No primary key: the rows as a multiset (a row written twice is two rows)."""
        if not columns:
            return [], []
        aliases = [sql.Identifier(f"c{n}") for n in range(len(columns))]
        live, old = read_live_as_old(rows, columns, aliases), read_old(columns, aliases)
        names = [c.name for c in columns]
        added = sql.SQL("SELECT {} FROM {} AS l EXCEPT ALL SELECT {} FROM {} AS m").format(
            live, rows.source, old, table.ident)
        upserts = [Change(table.label, "insert", dict(zip(names, values, strict=True)),
                          insert_row(table, columns), list(values))
                   for values in self.conn.execute(added).fetchall()]
        same = sql.SQL(" AND ").join(
            sql.SQL("m.{}::text IS NOT DISTINCT FROM %s").format(sql.Identifier(c.name))
            for c in columns)
        delete = sql.SQL("DELETE FROM {table} WHERE (tableoid, ctid) = (SELECT m.tableoid, "
                         "m.ctid FROM {table} AS m WHERE {same} LIMIT 1)").format(
            table=table.ident, same=same)
        gone = sql.SQL("SELECT {} FROM {} AS m EXCEPT ALL SELECT {} FROM {} AS l").format(
            old, table.ident, live, rows.source)
        deletes = [Change(table.label, "delete", dict(zip(names, values, strict=True)), delete,
                          list(values))
                   for values in self.conn.execute(gone).fetchall()]
        return upserts, deletes

    def _apply(self, changes: list[Change]) -> None:
        """Write ``changes`` (one table's): each kind's batch in one savepoint, else row
        by row, each in its own."""
        if self.request.discard:
            for change in changes:
                self._note(change.table, change.op, "dropped")
                self._list(change, "on_rollback: discard")
            return
        for op in ("insert", "update", "delete"):
            batch = [c for c in changes if c.op == op and c.statement is not None]
            for change in changes:
                if change.op == op and change.statement is None:  # the row is its key
                    self._note(change.table, op, "carried")
            if not batch:
                continue
            statement = batch[0].statement
            assert statement is not None
            try:
                with self.conn.transaction(), self.conn.cursor() as cursor:
                    cursor.executemany(statement, [c.params for c in batch])
            except psycopg.Error:
                for change in batch:
                    self._one(change)
            else:
                for change in batch:
                    self._note(change.table, op, "carried")

    def _one(self, change: Change) -> bool:
        assert change.statement is not None
        try:
            with self.conn.transaction():
                self.conn.execute(change.statement, change.params)
        except psycopg.Error as error:
            change.refused = describe(error)
            if error.sqlstate == FOREIGN_KEY_VIOLATION:
                self.retry.append(change)  # its parent may come (or its child go) later
            else:
                self._refuse(change)
            return False
        self._note(change.table, change.op, "carried")
        return True

    def _apply_retries(self) -> None:
        """Try the rows a foreign key refused again, until a round carries none."""
        while self.retry:
            pending, self.retry = self.retry, []
            if not any([self._one(change) for change in pending]):
                for change in self.retry:
                    self._refuse(change)
                self.retry = []

    def _refuse(self, change: Change) -> None:
        self.not_carried += 1
        self._note(change.table, change.op, "not-carried")
        self._list(change, change.refused)

    def _new_tables(self, old: Mapping[str, Table]) -> None:
        """Tables only the new schema has: their rows cannot be carried and are listed
        (a derived one, ``rollback_rows: null``, is counted only)."""
        for name in sorted(set(self.live) - set(old)):
            if self._derived(name):
                self._count_derived(name)
            else:
                self._skip_all(name, "the table does not exist in the snapshot's schema")

    def _count_derived(self, name: str) -> None:
        rows = self.live.get(name)
        if rows is not None:
            count = self.conn.execute(sql.SQL("SELECT count(*) FROM {}").format(rows.source))
            self.counts.setdefault(name, {})["derived:not-carried"] = int(
                (count.fetchone() or (0,))[0])

    def _skip_all(self, name: str, reason: str) -> None:
        """List every live row of ``name`` as not carried, with ``reason``."""
        rows = self.live.get(name)
        if rows is None:  # nothing of it is left to list: say why its rows were not read
            self._note(name, "table", "not-carried")
            self._list(Change(name, "table", {}, None), reason)
            return
        count = int((self.conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
            rows.source)).fetchone() or (0,))[0])
        self.not_carried += count
        per = self.counts.setdefault(name, {})
        per["row:not-carried"] = per.get("row:not-carried", 0) + count
        room = LISTED_MAX - len(self.listed)
        if room <= 0 or not count:
            return
        names = list(rows.types)
        cursor = self.conn.execute(sql.SQL("SELECT {} FROM {} LIMIT {}").format(
            sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in names),
            rows.source, sql.Literal(room)))
        for values in cursor.fetchall():
            self._list(Change(name, "insert", dict(zip(names, values, strict=True)), None),
                       reason)

    def _advance_sequences(self) -> None:
        """Move each sequence up to the last value handed out live, and to its column's
        largest value (the ids carried in): the next id is one nobody holds."""
        for seq in sequences(self.conn):
            if seq.increment <= 0:
                continue
            now = handed_out(self.conn, seq)
            target = max(now, self.positions.get(seq.label, now),
                         self._largest(seq) if seq.owner else now)
            if target <= now:
                continue
            try:
                with self.conn.transaction():
                    self.conn.execute("SELECT pg_catalog.setval(%s::pg_catalog.regclass, %s)",
                                      [seq.ident.as_string(self.conn), target])
            except psycopg.Error:  # past the sequence's maximum: leave it where it is
                continue
            self.moved[seq.label] = target

    def _largest(self, seq: Sequence) -> int:
        assert seq.owner is not None
        schema, table, column = seq.owner
        try:
            with self.conn.transaction():
                row = self.conn.execute(sql.SQL("SELECT max({})::bigint FROM {}").format(
                    sql.Identifier(column), sql.Identifier(schema, table))).fetchone()
        except psycopg.Error:  # not a number: the sequence's own position is all we know
            return -(2 ** 63)
        return int(row[0]) if row and row[0] is not None else -(2 ** 63)

    def _note(self, table: str, op: str, outcome: str) -> None:
        per = self.counts.setdefault(table, {})
        per[f"{op}:{outcome}"] = per.get(f"{op}:{outcome}", 0) + 1

    def _list(self, change: Change, reason: str) -> None:
        if len(self.listed) < LISTED_MAX:
            self.listed.append({"table": change.table, "op": change.op, "reason": reason,
                                "row": dict(change.row)})
