"""What a PostgreSQL database holds, read from its catalog: its own tables (columns,
primary keys, foreign keys), its sequences, and the rows and changes the carry-forward
compares (``pg_carry.py``).

Names come from the catalog and are quoted as identifiers wherever they reach SQL
(``psycopg.sql``); types as ``format_type`` spells them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

Connection = psycopg.Connection[tuple[Any, ...]]
Value = str | None  # a column's value as text (NULL: None)
LOCK_TIMEOUT = "60s"  # a writer holding a table longer than this: the restore is refused


OWN = """n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                   WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                     AND d.objid = c.oid AND d.deptype = 'e')"""


COLUMNS = f"""
SELECT n.nspname, c.relname, a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod),
       a.attgenerated <> '', b.typnamespace <> 'pg_catalog'::pg_catalog.regnamespace,
       coalesce(pg_catalog.array_position(k.indkey::pg_catalog.int2[], a.attnum)
                - pg_catalog.array_lower(k.indkey::pg_catalog.int2[], 1) + 1, 0)
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
  JOIN pg_catalog.pg_type b ON b.oid = CASE WHEN t.typcategory = 'A' AND t.typelem <> 0
                                            THEN t.typelem ELSE t.oid END
  LEFT JOIN pg_catalog.pg_index k ON k.indrelid = c.oid AND k.indisprimary
 WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND {OWN}
 ORDER BY n.nspname, c.relname, a.attnum
"""


FOREIGN_KEYS = """
SELECT cn.nspname, cc.relname, pn.nspname, pc.relname FROM pg_catalog.pg_constraint k
  JOIN pg_catalog.pg_class cc ON cc.oid = k.conrelid
  JOIN pg_catalog.pg_namespace cn ON cn.oid = cc.relnamespace
  JOIN pg_catalog.pg_class pc ON pc.oid = k.confrelid
  JOIN pg_catalog.pg_namespace pn ON pn.oid = pc.relnamespace
 WHERE k.contype = 'f' AND k.conrelid <> k.confrelid
"""


SEQUENCES = f"""
SELECT n.nspname, c.relname, s.seqincrement, tn.nspname, tc.relname, ta.attname
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_catalog.pg_sequence s ON s.seqrelid = c.oid
  LEFT JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
        AND d.objid = c.oid AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
        AND d.refobjsubid > 0 AND d.deptype IN ('a', 'i')
  LEFT JOIN pg_catalog.pg_class tc ON tc.oid = d.refobjid
  LEFT JOIN pg_catalog.pg_namespace tn ON tn.oid = tc.relnamespace
  LEFT JOIN pg_catalog.pg_attribute ta ON ta.attrelid = d.refobjid AND ta.attnum = d.refobjsubid
 WHERE c.relkind = 'S' AND {OWN}
 ORDER BY n.nspname, c.relname
"""


TYPES = """
SELECT t.oid, pg_catalog.format_type(t.oid, NULL),
       b.typnamespace <> 'pg_catalog'::pg_catalog.regnamespace
  FROM pg_catalog.pg_type t
  JOIN pg_catalog.pg_type b ON b.oid = CASE WHEN t.typcategory = 'A' AND t.typelem <> 0
                                            THEN t.typelem ELSE t.oid END
 WHERE t.oid = ANY(%s)
"""


def label(schema: str, name: str) -> str:
    """A table as reports and ``rollback_rows`` name it: ``name`` in ``public``, else
    ``schema.name``."""
    return name if schema == "public" else f"{schema}.{name}"


def plain_label(name: str) -> str:
    """A ``rollback_rows`` key as ``label`` spells it (``public.tx`` is ``tx``)."""
    return name.removeprefix("public.")


def describe(error: psycopg.Error) -> str:
    """One line naming the error (its class and the server's message)."""
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    return f"{type(error).__name__}: {text}"[:500]


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # as format_type spells it
    generated: bool = False  # GENERATED ALWAYS AS (...) STORED: derived, never written
    own_type: bool = False  # an enum, domain, ... the database defines (dropped by a restore)


@dataclass(frozen=True)
class Named:
    """A table or sequence of the database, by schema and name."""

    schema: str
    name: str

    @property
    def label(self) -> str:
        return label(self.schema, self.name)

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)


@dataclass(frozen=True)
class Table(Named):
    columns: tuple[Column, ...]
    key: tuple[str, ...]  # the primary key's columns, in the key's order (empty: none)

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


@dataclass(frozen=True)
class Rows:
    """Live rows kept in a temporary table of the session, with its columns' types."""

    source: sql.Identifier
    types: dict[str, str]  # column -> the copy's type (``text`` for the database's own)


@dataclass
class Change:
    """One row to insert, update or delete in a table of the restored snapshot."""

    table: str
    op: str  # insert | update | delete
    row: dict[str, Value]
    statement: sql.Composed | None  # None: nothing to write (the row is the key alone)
    params: list[Value] = field(default_factory=list)
    refused: str = ""  # why it was refused the last time it was tried


def tables(conn: Connection) -> dict[str, Table]:
    """The database's own tables, by label, with their columns and primary keys."""
    found: dict[tuple[str, str], list[tuple[Column, int]]] = {}
    for schema, name, column, kind, generated, own, position in conn.execute(COLUMNS):
        found.setdefault((schema, name), []).append(
            (Column(column, kind, bool(generated), bool(own)), int(position)))
    result = {}
    for (schema, name), columns in found.items():
        key = tuple(c.name for c, p in sorted(columns, key=lambda cp: cp[1]) if p > 0)
        result[label(schema, name)] = Table(schema, name, tuple(c for c, _ in columns), key)
    return result


def lock_tables(conn: Connection) -> dict[str, Table]:
    """Lock every own table IN EXCLUSIVE MODE (readers go on, writers wait until the
    transaction ends); the tables."""
    conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(LOCK_TIMEOUT)))
    conn.execute("SET LOCAL statement_timeout = 0")
    found = tables(conn)
    if found:
        conn.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(
            sql.SQL(", ").join(t.ident for t in found.values())))
    return found


def dependency_order(conn: Connection, found: Mapping[str, Table]) -> list[str]:
    """The labels of ``found``, each table after the tables its foreign keys name."""
    parents: dict[str, set[str]] = {name: set() for name in found}
    for child_schema, child, parent_schema, parent in conn.execute(FOREIGN_KEYS):
        a, b = label(child_schema, child), label(parent_schema, parent)
        if a in parents and b in parents:
            parents[a].add(b)
    order: list[str] = []
    while parents:
        ready = sorted(n for n, p in parents.items() if not p - set(order)) or sorted(parents)[:1]
        for name in ready:  # a cycle: one of its tables first (its rows are tried again)
            order.append(name)
            parents.pop(name)
    return order


@dataclass(frozen=True)
class Sequence(Named):
    increment: int
    owner: tuple[str, str, str] | None  # schema, table, column it numbers


def sequences(conn: Connection) -> list[Sequence]:
    return [Sequence(s, n, int(inc), (ts, tn, tc) if ts and tn and tc else None)
            for s, n, inc, ts, tn, tc in conn.execute(SEQUENCES)]


def handed_out(conn: Connection, seq: Sequence) -> int:
    """The last value ``seq`` handed out (or, never called, the one before its next)."""
    row = conn.execute(sql.SQL("SELECT last_value, is_called FROM {}").format(seq.ident))
    last, called = row.fetchone() or (0, True)
    return int(last) if called else int(last) - seq.increment


# -- the SQL the carry-forward reads and writes with ---------------------------------

def read_live_as_old(rows: Rows, columns: list[Column], aliases: list[sql.Identifier]
               ) -> sql.Composed:
    """The live columns as text, each read through the old column's type."""
    return sql.SQL(", ").join(
        sql.SQL("l.{}::text AS {}").format(sql.Identifier(c.name), alias)
        if rows.types[c.name] == c.type else
        sql.SQL("CAST(l.{} AS {})::text AS {}").format(sql.Identifier(c.name),
                                                       sql.SQL(c.type), alias)
        for c, alias in zip(columns, aliases, strict=True))


def read_old(columns: list[Column], aliases: list[sql.Identifier]) -> sql.Composed:
    """The old (snapshot's) columns as text."""
    return sql.SQL(", ").join(sql.SQL("m.{}::text AS {}").format(sql.Identifier(c.name),
                                                                  alias)
                              for c, alias in zip(columns, aliases, strict=True))


def insert_row(table: Table, columns: list[Column]) -> sql.Composed:
    """INSERT one row of ``columns``, ids kept, each value cast to the old column's type."""
    return sql.SQL("INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE VALUES ({})").format(
        table.ident, sql.SQL(", ").join(sql.Identifier(c.name) for c in columns),
        sql.SQL(", ").join(sql.SQL("CAST(%s AS {})").format(sql.SQL(c.type))
                           for c in columns))


def assign_columns(columns: list[Column]) -> sql.Composed:
    """``col = CAST(%s AS type), ...`` for an UPDATE."""
    return sql.SQL(", ").join(sql.SQL("{} = CAST(%s AS {})").format(
        sql.Identifier(c.name), sql.SQL(c.type)) for c in columns)


def match_key(key: list[Column]) -> sql.Composed:
    """``key = CAST(%s AS type) AND ...`` for a WHERE."""
    return sql.SQL(" AND ").join(sql.SQL("{} = CAST(%s AS {})").format(
        sql.Identifier(c.name), sql.SQL(c.type)) for c in key)
