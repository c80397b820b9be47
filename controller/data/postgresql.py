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
- **A killed controller** takes its client tools with it (``setpriv --pdeathsig``): a dump
  is not half-stored (objects are stored whole, by sha256), a restore's transaction rolls
  back, and ``relctl resume`` does the step again.
- **Restore**: in one ``psql --single-transaction``: drop every object of the database's
  own schemas (extensions' objects kept), then the dump's SQL (``pg_restore -f -``).
  Objects a migration added after the snapshot go too, which ``pg_restore --clean`` alone
  would leave behind; a failure anywhere leaves the database as it was.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import IO, Protocol

import psycopg

from controller.data.engine import Capture
from controller.errors import DataUnreachableError, InputError, PrerequisiteError
from controller.models.items import PostgresDatabase
from controller.models.rows import TableRows

CONNECT_TIMEOUT_S = 5
TOOL_TIMEOUT_S = 3600
PG_LIB = Path(os.environ.get("RELCTL_PG_LIB", "/usr/lib/postgresql"))
# SQLSTATE classes of a refused login or a wrong database: the manifest or its secret.
BAD_LOGIN = ("28", "3D")
# A client tool gets SIGTERM when relctl dies (util-linux's setpriv sets its parent-death
# signal, then runs it): a kill -9 of the controller leaves no pg_dump or psql running, and
# a restore's transaction rolls back on the server.
DIES_WITH_US = (["setpriv", "--pdeathsig", "TERM", "--"] if shutil.which("setpriv") else [])
NOISE = re.compile(r"^(--.*|\\(un)?restrict .*|)$")

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
            digest = self._digest(conn, schema)
        return Capture(dump, digest, version, time.monotonic() - started,
                       hashlib.sha256(schema).hexdigest())

    def restore(self, dump: Path) -> None:
        version = self.check()
        with tempfile.TemporaryDirectory(prefix="relctl-pg-") as tmp:
            clear = Path(tmp) / "clear.sql"
            clear.write_text(CLEAR)
            errors = Path(tmp) / "pg_restore.err"
            # pg_restore writes the dump's SQL to psql's stdin: no copy of it on disk
            with errors.open("wb") as log, subprocess.Popen(
                    [*DIES_WITH_US, str(self._tool("pg_restore", version)), "-f", "-",
                     str(dump)], stdout=subprocess.PIPE, stderr=log,
                    env=self._environment()) as source:
                try:
                    self._run(self._tool("psql", version), "-X", "-q", "--no-password",
                              "--single-transaction", "-v", "ON_ERROR_STOP=1", "-f",
                              str(clear), "-f", "-", *self._target(), stdin=source.stdout)
                except BaseException:
                    source.kill()  # psql stopped reading: pg_restore must not wait on it
                    raise
                finally:
                    source.wait()
            if source.returncode != 0:
                raise InputError(f"data item {self.item.name!r}: pg_restore could not read "
                                 f"the dump {dump}: {errors.read_text()[-500:]}")

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
        with self._snapshot() as (conn, version, snapshot):
            return self._digest(conn, self._schema(version, snapshot))

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

    def _digest(self, conn: Connection, schema: bytes) -> str:
        """Schema, rows and sequences as the transaction holding ``conn``'s snapshot sees
        them (``schema``: ``_schema`` of the same snapshot)."""
        digest = hashlib.sha256(schema)
        for name, kind in conn.execute(TABLES).fetchall():
            if kind == "S":
                row = conn.execute(f"SELECT last_value, is_called FROM {name}").fetchone()
            else:
                row = conn.execute(
                    f"SELECT count(*), md5(coalesce(string_agg(md5(t::text), '' ORDER BY "
                    f"md5(t::text)), '')) FROM {name} t").fetchone()
            digest.update(f"{name}|{row}\n".encode())
        return digest.hexdigest()

    @contextmanager
    def connect(self, host: str | None = None, port: int | None = None
                ) -> Iterator[Connection]:
        """A connection to the database on its server, or on ``host``:``port`` (a standby
        of it), with the item's role and password; refusals become relctl's errors."""
        try:
            conn = psycopg.connect(host=host or self.db.host, port=port or self.db.port,
                                   dbname=self.db.database, user=self.db.user,
                                   password=self.password, connect_timeout=CONNECT_TIMEOUT_S,
                                   application_name="relctl", autocommit=True)
        except psycopg.OperationalError as error:
            raise self._login_error(error) from None
        try:
            yield conn
        finally:
            conn.close()

    def _login_error(self, error: psycopg.OperationalError) -> Exception:
        text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
        text = text or type(error).__name__
        state = error.sqlstate or ""
        refused = state.startswith(BAD_LOGIN) or "authentication failed" in text or (
            "does not exist" in text) or "no password supplied" in text
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
        leading = re.match(r"\d+", server_version.strip())
        return pg_tool(name, int(leading.group()) if leading else 0)

    def _target(self) -> list[str]:
        return ["-h", self.db.host, "-p", str(self.db.port), "-U", self.db.user,
                "-d", self.db.database]

    def _environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        password = self.password
        if password is not None:
            env["PGPASSWORD"] = password
        env["PGCONNECT_TIMEOUT"] = str(CONNECT_TIMEOUT_S)
        env["PGAPPNAME"] = "relctl"
        return env

    def _run(self, tool: Path, *args: str, stdin: IO[bytes] | None = None) -> str:
        try:
            done = subprocess.run([*DIES_WITH_US, str(tool), *args], stdin=stdin,
                                  capture_output=True, text=True, env=self._environment(),
                                  timeout=TOOL_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise DataUnreachableError(f"data item {self.item.name!r}: {tool.name} did not "
                                       f"finish in {TOOL_TIMEOUT_S} s") from None
        if done.returncode != 0:
            detail = done.stderr.strip().splitlines()[-3:] or [f"exit {done.returncode}"]
            raise InputError(f"data item {self.item.name!r} ({self.db.address}): "
                             f"{tool.name} failed: {' | '.join(detail)}"[:1500])
        return done.stdout


def pg_tool(name: str, major: int = 0) -> Path:
    """A PostgreSQL program of version ``major`` (Debian's /usr/lib/postgresql/<v>/bin),
    else of the newest installed version above it, else on the PATH (a pg_dump older
    than the server refuses to dump it)."""
    versions = sorted((int(p.name) for p in PG_LIB.glob("[0-9]*") if p.name.isdigit()),
                      reverse=True)
    for candidate in [major, *versions]:
        path = PG_LIB / str(candidate) / "bin" / name
        if candidate >= major and path.exists():
            return path
    found = shutil.which(name)
    if found:
        return Path(found)
    wanted = f"PostgreSQL {major} or newer" if major else "PostgreSQL"
    raise PrerequisiteError(f"{name} of {wanted} is not installed on this machine",
                            hint=f"install the Debian package postgresql-client-{major}"
                            if major else "install the Debian package postgresql")
