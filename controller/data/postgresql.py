"""PostgreSQL data items: ``pg_dump -Fc`` before the change, one-transaction restore after.

The controller reaches the database itself (host, port, database, role from the
manifest; the password from an environment variable or a file on the controller, handed
to the client tools through ``PGPASSWORD`` in their environment: never an argument, a
log line or a journal row).

- **Capture**: one repeatable-read transaction exports its snapshot; ``pg_dump -Fc
  --snapshot`` dumps exactly that snapshot, and the logical digest is computed in the same
  transaction, so the digest describes the dump even while the service keeps writing.
- **Logical digest**: the schema as ``pg_dump --schema-only`` prints it (comments and
  ``\\restrict`` keys dropped), each table's row count and an order-independent hash of
  its rows, and each sequence's position.
- **A killed controller** takes its client tools with it (they run as owned children,
  ``adapters/postgresql.py``): a dump is not half-stored (objects are stored whole, by
  sha256), a restore's transaction rolls back, and ``relctl resume`` does the step again.
- **Restore**: in one transaction on relctl's own connection, every table of the
  database's own schemas locked against writers first: drop every object of those schemas
  (extensions' objects kept), then the dump's SQL (``pg_restore -f -``, section by section:
  statements as they come, each table's rows through ``COPY FROM STDIN``). Objects a
  migration added after the snapshot go too, which ``pg_restore --clean`` alone would
  leave behind; a failure anywhere leaves the database as it was.
- **Rollback with carry-forward** (``roll_back``): the same transaction reads the rows
  written since the snapshot before the restore and carries them into it after
  (``pg_carry.py``), checking the restored rows against the snapshot's digest first.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import IO, Protocol

import psycopg

from controller.adapters import postgresql as pg
from controller.data.engine import Capture, CarryReport, CarryRequest, DataRestoreError
from controller.data.pg_carry import PgCarry
from controller.data.pg_catalog import describe, lock_tables
from controller.errors import DataUnreachableError, InputError
from controller.models.items import PostgresDatabase
from controller.models.rows import TableRows

CONNECT_TIMEOUT_S = 5
TOOL_TIMEOUT_S = 3600
NOISE = re.compile(r"^(--.*|\\(un)?restrict .*|)$")
# psql's meta-commands in pg_restore's SQL (pg_dump 17.6, 16.10, 15.14, ... on): skipped.
RESTRICT = re.compile(rb"^\\(un)?restrict [A-Za-z0-9]*\r?\n?$")
COPY_FROM = re.compile(rb"^COPY .+ FROM stdin;\r?\n$")
END_OF_COPY = (b"\\.\n", b"\\.\r\n", b"\\.")
# The data section wraps large objects in BEGIN/COMMIT: the restore is one transaction.
TRANSACTION_LINES = (b"BEGIN;", b"COMMIT;")
SECTIONS = ("pre-data", "data", "post-data")
COPY_CHUNK = 1 << 20

# Drops every object of the database's own schemas, keeping what extensions own.
CLEAR = r"""
DO $relctl$
DECLARE
  name text;
BEGIN
  FOR name IN SELECT quote_ident(n.nspname) FROM pg_namespace n
      WHERE n.nspname !~ '^pg_' AND n.nspname NOT IN ('information_schema', 'public')
        AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = n.oid AND d.deptype = 'e')
  LOOP
    EXECUTE 'DROP SCHEMA IF EXISTS ' || name || ' CASCADE';
  END LOOP;
  FOR name IN SELECT CASE c.relkind WHEN 'v' THEN 'VIEW ' WHEN 'm' THEN 'MATERIALIZED VIEW '
                WHEN 'S' THEN 'SEQUENCE ' WHEN 'f' THEN 'FOREIGN TABLE ' ELSE 'TABLE ' END
                || 'IF EXISTS public.' || quote_ident(c.relname)
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
        AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                        AND d.objid = c.oid AND d.deptype IN ('e', 'a', 'i'))
  LOOP
    EXECUTE 'DROP ' || name || ' CASCADE';
  END LOOP;
  FOR name IN SELECT 'ROUTINE IF EXISTS ' || p.oid::regprocedure::text
      FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
      WHERE n.nspname = 'public' AND p.prokind <> 'a'
        AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')
  LOOP
    EXECUTE 'DROP ' || name || ' CASCADE';
  END LOOP;
  FOR name IN SELECT 'TYPE IF EXISTS public.' || quote_ident(t.typname)
      FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
      WHERE n.nspname = 'public' AND t.typtype IN ('e', 'd', 'r', 'm')
        AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = t.oid AND d.deptype = 'e')
  LOOP
    EXECUTE 'DROP ' || name || ' CASCADE';
  END LOOP;
END
$relctl$;
"""

TABLES = """
SELECT format('%I.%I', n.nspname, c.relname), c.relkind FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'S') AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
 ORDER BY 1
"""


Connection = psycopg.Connection[tuple[object, ...]]


def _value(conn: Connection, query: str) -> str:
    """The one value ``query`` returns, as text."""
    row = conn.execute(query).fetchone()
    assert row is not None, query
    return str(row[0])


class NamedDatabase(Protocol):
    """A manifest's data item or a continuity plan's replicated data: a PostgreSQL
    database under a name."""

    @property
    def name(self) -> str: ...

    @property
    def postgresql(self) -> PostgresDatabase | None: ...


class PostgresEngine:
    """A PostgreSQL database named by a data item."""

    def __init__(self, item: NamedDatabase) -> None:
        assert item.postgresql is not None, "a postgresql item has its database block"
        self.item = item
        self.db: PostgresDatabase = item.postgresql

    # -- the seam ----------------------------------------------------------------------

    def check(self) -> str:
        with self.connect() as conn:
            version = _value(conn, "SHOW server_version")
        self._tool("pg_dump", version)
        return version

    def capture(self, folder: Path) -> Capture:
        started = time.monotonic()
        dump = folder / f"{self.item.name}.pgdump"
        with self._snapshot() as (conn, version, snapshot):
            self._run(self._tool("pg_dump", version), "-Fc", "--no-password",
                      f"--snapshot={snapshot}", "-f", str(dump), *self._target())
            schema = self._schema(version, snapshot)
            lines = self._row_lines(conn)
        return Capture(dump, _digest_of(schema, lines), version, time.monotonic() - started,
                       hashlib.sha256(schema).hexdigest(), _digest_of(b"", lines))

    def restore(self, dump: Path) -> None:
        self._restore(dump, None)

    def roll_back(self, dump: Path, carry: CarryRequest) -> CarryReport:
        report = self._restore(dump, carry)
        assert report is not None
        return report

    def _restore(self, dump: Path, carry: CarryRequest | None) -> CarryReport | None:
        """The restore, in one transaction holding off every writer; with ``carry``, the
        rows written since read before it and carried in after (``pg_carry``)."""
        version = self.check()
        where = f"data item {self.item.name!r} ({self.db.address})"
        try:
            with self.connect() as conn, conn.transaction():
                live = lock_tables(conn)
                rows = PgCarry(conn, carry) if carry is not None else None
                if rows is not None:
                    rows.read_live(live)
                conn.execute(CLEAR.encode())
                for section in SECTIONS:
                    with self._restore_sql(dump, version, section) as script:
                        run_script(conn, script, data=section == "data")
                if carry is not None and carry.rows_digest and (
                        _digest_of(b"", self._row_lines(conn)) != carry.rows_digest):
                    raise DataRestoreError(f"{where}: the restored rows do not match the "
                                           "snapshot's digest: nothing was changed")
                if rows is not None:
                    rows.carry()
        except psycopg.Error as error:
            raise DataRestoreError(f"{where}: the restore failed and was undone (the "
                                   f"database is as it was): {describe(error)}") from None
        return rows.report() if rows is not None else None

    @contextmanager
    def _restore_sql(self, dump: Path, version: str, section: str) -> Iterator[IO[bytes]]:
        """The SQL of one section of ``dump``, as ``pg_restore -f -`` streams it."""
        try:
            with pg.tool_output(self._tool("pg_restore", version),
                                [f"--section={section}", "-f", "-", str(dump)],
                                self._environment()) as sql_text:
                yield sql_text
        except pg.ToolFailedError as failed:
            raise InputError(f"data item {self.item.name!r}: pg_restore could not read "
                             f"the dump {dump}: {failed.stderr}") from None

    def tables(self, host: str | None = None, port: int | None = None
               ) -> dict[str, TableRows]:
        """Every table of the database's own schemas (``schema.table``), its rows sorted:
        what a failback's catch-up report compares between the sites."""
        tables = {}
        with self.connect(host, port) as conn:
            names = [str(r[0]) for r in conn.execute(TABLES).fetchall() if r[1] == "r"]
            for name in names:
                cursor = conn.execute(f"SELECT * FROM {name}")
                columns = [c.name for c in cursor.description or []]
                rows = sorted((tuple(r) for r in cursor.fetchall()),
                              key=lambda row: tuple(str(v) for v in row))
                tables[name.split(".", 1)[1] if name.startswith("public.") else name] = (
                    TableRows(columns, rows))
        return tables

    def digest(self) -> str:
        return self.digests()[0]

    def digests(self) -> tuple[str, str]:
        with self._snapshot() as (conn, version, snapshot):
            schema = self._schema(version, snapshot)
            return (_digest_of(schema, self._row_lines(conn)),
                    hashlib.sha256(schema).hexdigest())

    # -- helpers -----------------------------------------------------------------------

    @contextmanager
    def _snapshot(self) -> Iterator[tuple[Connection, str, str]]:
        """A read-only repeatable-read transaction, the server's version and the id of
        the snapshot it exported (other sessions, pg_dump's, can see exactly its data)."""
        with self.connect() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield conn, _value(conn, "SHOW server_version"), _value(
                conn, "SELECT pg_export_snapshot()")

    def schema_digest(self) -> str:
        with self._snapshot() as (_conn, version, snapshot):
            return hashlib.sha256(self._schema(version, snapshot)).hexdigest()

    def _schema(self, version: str, snapshot: str) -> bytes:
        """The schema as ``pg_dump --schema-only`` prints it, comments left out."""
        schema = self._run(self._tool("pg_dump", version), "--schema-only", "--no-password",
                           f"--snapshot={snapshot}", *self._target())
        return b"".join(line.encode() + b"\n" for line in schema.splitlines()
                        if not NOISE.match(line))

    @staticmethod
    def _row_lines(conn: Connection) -> list[bytes]:
        """Rows and sequences as ``conn``'s transaction sees them: per table its row count
        and an order-independent hash of its rows, per sequence its position (the logical
        digest hashes the schema, then these)."""
        lines = []
        for name, kind in conn.execute(TABLES).fetchall():
            if kind == "S":
                row = conn.execute(f"SELECT last_value, is_called FROM {name}").fetchone()
            else:
                row = conn.execute(
                    f"SELECT count(*), md5(coalesce(string_agg(md5(t::text), '' ORDER BY "
                    f"md5(t::text)), '')) FROM {name} t").fetchone()
            lines.append(f"{name}|{row}\n".encode())
        return lines

    @contextmanager
    def connect(self, host: str | None = None, port: int | None = None
                ) -> Iterator[Connection]:
        """A connection to the database on its server, or on ``host``:``port`` (a standby
        of it), with the item's role and password; refusals become relctl's errors."""
        try:
            conn = pg.connect(host=host or self.db.host, port=port or self.db.port,
                              dbname=self.db.database, user=self.db.user,
                              password=self.password, connect_timeout=CONNECT_TIMEOUT_S,
                              application_name="relctl")
        except psycopg.OperationalError as error:
            raise self._login_error(error) from None
        try:
            yield conn
        finally:
            conn.close()

    def _login_error(self, error: psycopg.OperationalError) -> Exception:
        text, refused = pg.error_text(error), pg.login_refused(error)
        where = f"data item {self.item.name!r} ({self.db.address})"
        if refused:
            return InputError(f"{where}: the server refused the login: {text}",
                              hint="check user, database and the password source "
                                   "(password_env / password_file); nothing was touched")
        return DataUnreachableError(f"{where}: the database server cannot be reached: {text}",
                                    hint="is it running and listening there? nothing was "
                                         "touched")

    @cached_property
    def password(self) -> str | None:
        """The password, read once (a failure is raised again at the next use)."""
        if self.db.password_env:
            value = os.environ.get(self.db.password_env)
            if value is None:
                raise InputError(f"data item {self.item.name!r}: the environment variable "
                                 f"{self.db.password_env} (postgresql.password_env) is not "
                                 "set", hint="export it before running relctl")
            return value
        if self.db.password_file:
            try:
                lines = self.db.password_file.read_text(encoding="utf-8").splitlines()
            except OSError as error:
                raise InputError(f"data item {self.item.name!r}: cannot read "
                                 f"postgresql.password_file {self.db.password_file}: "
                                 f"{error.strerror}") from None
            return lines[0] if lines else ""
        return None  # libpq's own sources: ~/.pgpass, a trusted local server

    @staticmethod
    def _tool(name: str, server_version: str) -> Path:
        """The client tool for the server's major version."""
        return pg.pg_tool(name, pg.server_major(server_version))

    def _target(self) -> list[str]:
        return ["-h", self.db.host, "-p", str(self.db.port), "-U", self.db.user,
                "-d", self.db.database]

    def _environment(self) -> dict[str, str]:
        return pg.tool_environment(self.password, CONNECT_TIMEOUT_S)

    def _run(self, tool: Path, *args: str) -> str:
        try:
            done = pg.run_tool(tool, list(args), self._environment(), TOOL_TIMEOUT_S)
        except TimeoutError:
            raise DataUnreachableError(f"data item {self.item.name!r}: {tool.name} did not "
                                       f"finish in {TOOL_TIMEOUT_S} s") from None
        if done.code != 0:
            detail = done.stderr.strip().splitlines()[-3:] or [f"exit {done.code}"]
            raise InputError(f"data item {self.item.name!r} ({self.db.address}): "
                             f"{tool.name} failed: {' | '.join(detail)}"[:1500])
        return done.stdout


def _digest_of(schema: bytes, lines: Iterable[bytes]) -> str:
    digest = hashlib.sha256(schema)
    for line in lines:
        digest.update(line)
    return digest.hexdigest()


def run_script(conn: Connection, script: Iterable[bytes], *, data: bool) -> None:
    """Run SQL as ``pg_restore -f -`` writes it on ``conn``, inside its transaction:
    psql's ``\\restrict`` lines skipped; in the data section (``data``), the statements
    between its COPY blocks as they come, each COPY's rows through ``COPY FROM STDIN``, and
    the BEGIN/COMMIT around large objects skipped (the whole restore is one transaction).
    The schema sections go whole, as one batch of statements."""
    pending: list[bytes] = []
    lines = iter(script)
    for line in lines:
        if RESTRICT.match(line):
            continue
        if not data:
            pending.append(line)
        elif COPY_FROM.match(line):
            _flush(conn, pending)
            _copy(conn, line, lines)
        elif line.strip() not in TRANSACTION_LINES:
            pending.append(line)
    _flush(conn, pending)


def _flush(conn: Connection, pending: list[bytes]) -> None:
    statements = b"".join(pending)
    pending.clear()
    if any(line.strip() and not line.lstrip().startswith(b"--")
           for line in statements.splitlines()):
        conn.execute(statements)


def _copy(conn: Connection, command: bytes, lines: Iterator[bytes]) -> None:
    """One table's rows: the COPY command's lines up to its ``\\.``."""
    chunk: list[bytes] = []
    size = 0
    with conn.cursor() as cursor, cursor.copy(command.strip().rstrip(b";")) as copy:
        for line in lines:
            if line in END_OF_COPY:
                break
            chunk.append(line)
            size += len(line)
            if size >= COPY_CHUNK:
                copy.write(b"".join(chunk))
                chunk, size = [], 0
        else:
            raise DataRestoreError("the dump's SQL ends inside a COPY block")
        if chunk:
            copy.write(b"".join(chunk))

