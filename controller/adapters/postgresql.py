"""PostgreSQL as relctl reaches it, in one place, for the shared journal
(``journal/backends/postgresql.py``), the data engine (``data/postgresql.py``) and
streaming replication (``engine/continuity/pg_streaming.py``):

- **connections** (psycopg 3, autocommit) and what a failed one means: a refused login or
  database (the configuration's fault) or a server that cannot be reached;
- **the client tools** (``pg_dump``, ``pg_restore``) of the server's major version, run as
  owned children like every other child of relctl (``adapters/children.py``: the
  launcher's own process group, stopped with relctl, swept when cut short), the password
  in their environment only (``PGPASSWORD``), never an argument;
- **a streaming standby's state**, its promotion and its re-pointing at a new primary.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from controller.adapters.children import owned_child, start_owned, stop_owned
from controller.errors import PrerequisiteError

if TYPE_CHECKING:  # psycopg is imported when a connection is made: not by every command
    import psycopg

    Connection = psycopg.Connection[Any]

PG_LIB = Path(os.environ.get("RELCTL_PG_LIB", "/usr/lib/postgresql"))
# SQLSTATE classes of a refused login or a wrong database: the configuration's fault.
BAD_LOGIN = ("28", "3D")


# -- connections ---------------------------------------------------------------------------

def connect(conninfo: str = "", **options: Any) -> Connection:
    """A psycopg connection in autocommit mode (``options``: psycopg's and libpq's)."""
    import psycopg  # noqa: PLC0415 - see TYPE_CHECKING above

    conn: Connection = psycopg.connect(conninfo, autocommit=True, **options)
    return conn


def error_text(error: psycopg.Error) -> str:
    """psycopg's message on one line (libpq's spans several)."""
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    return text or type(error).__name__


def login_refused(error: psycopg.OperationalError) -> bool:
    """Whether the server refused the login or the database (else: not reached)."""
    text = error_text(error)
    return (error.sqlstate or "").startswith(BAD_LOGIN) or any(
        said in text for said in ("authentication failed", "does not exist",
                                  "no password supplied"))


# -- the client tools ----------------------------------------------------------------------

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


def server_major(version: str) -> int:
    """The major version in ``SHOW server_version`` (0 when there is none)."""
    leading = re.match(r"\d+", version.strip())
    return int(leading.group()) if leading else 0


def tool_environment(password: str | None, connect_timeout: int) -> dict[str, str]:
    """The tools' environment: relctl's, without the caller's PG* settings, with the
    password (when there is one) where libpq reads it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    if password is not None:
        env["PGPASSWORD"] = password
    env["PGCONNECT_TIMEOUT"] = str(connect_timeout)
    env["PGAPPNAME"] = "relctl"
    return env


@dataclass(frozen=True)
class ToolRun:
    """How a client tool ended."""

    code: int
    stdout: str
    stderr: str


def run_tool(tool: Path, args: list[str], env: dict[str, str], timeout: float) -> ToolRun:
    """Run ``tool`` as an owned child and wait; its exit code and output. Past
    ``timeout`` it is stopped (with all it started) and ``TimeoutError`` raised."""
    with owned_child(None, f"pg-{tool.name}", tool.name) as child, \
            tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = start_owned(child, [str(tool), *args], env=env, stdout=out, stderr=err)
        try:
            child.exit_code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.cut_short = True
            raise TimeoutError(f"{tool.name} did not finish in {timeout:.0f} s") from None
        finally:
            if process.poll() is None:  # a timeout or an interrupt: stop it and its group
                stop_owned(process)
        out.seek(0)
        err.seek(0)
        return ToolRun(child.exit_code, out.read().decode(errors="replace"),
                       err.read().decode(errors="replace"))


@contextmanager
def tool_output(tool: Path, args: list[str], env: dict[str, str]) -> Iterator[IO[bytes]]:
    """``tool``'s standard output as it writes it; it runs as an owned child, stopped if
    the reader stops early. Raises ``ToolFailedError`` (with the end of its standard
    error) when it ends with another code than 0."""
    with owned_child(None, f"pg-{tool.name}", tool.name) as child, \
            tempfile.TemporaryFile() as errors:
        process = start_owned(child, [str(tool), *args], env=env, stdout=subprocess.PIPE,
                              stderr=errors)
        assert process.stdout is not None
        try:
            yield process.stdout
            process.stdout.read()  # the rest (nothing): the tool ends on its own
            child.exit_code = process.wait()
        except BaseException:
            child.cut_short = True  # we stopped reading: it must not wait on us
            raise
        finally:
            if process.poll() is None:
                stop_owned(process, grace_s=5)
            process.stdout.close()
        if child.exit_code != 0:
            errors.seek(0)
            raise ToolFailedError(tool.name, child.exit_code,
                             errors.read().decode(errors="replace")[-500:])


class ToolFailedError(Exception):
    """A client tool ended with another code than 0."""

    def __init__(self, tool: str, code: int, stderr: str) -> None:
        super().__init__(f"{tool} exited {code}: {stderr}")
        self.tool, self.code, self.stderr = tool, code, stderr


# -- streaming standbys --------------------------------------------------------------------

STANDBY_STATE = """
SELECT pg_is_in_recovery(),
       (SELECT status FROM pg_stat_wal_receiver),
       (SELECT sender_host FROM pg_stat_wal_receiver),
       (SELECT sender_port FROM pg_stat_wal_receiver),
       pg_last_wal_replay_lsn()::text,
       coalesce(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), 0),
       extract(epoch FROM pg_last_xact_replay_timestamp()),
       pg_last_wal_receive_lsn()::text
"""


@dataclass(frozen=True)
class Standby:
    """What a PostgreSQL cluster says about its replication."""

    host: str
    in_recovery: bool
    receiver: str | None  # streaming, ...
    source: str | None  # host:port it streams from
    replay_lsn: str | None
    unreplayed_bytes: float
    replay_at: float | None  # commit time of the last replayed transaction (epoch)
    receive_lsn: str | None = None  # the newest WAL it received

    def streams_from(self, host: str, port: int) -> bool:
        return self.in_recovery and self.receiver == "streaming" and self.source == f"{host}:{port}"

    @property
    def received(self) -> int:
        """How far its WAL goes (received or replayed), as a number to compare."""
        return max(lsn_number(self.receive_lsn), lsn_number(self.replay_lsn))


def standby_state(conn: Connection, host: str) -> Standby:
    """The replication state of the cluster ``conn`` reaches (on ``host``)."""
    row = conn.execute(STANDBY_STATE).fetchone()
    assert row is not None
    text = [None if v is None else str(v) for v in row]
    return Standby(host, bool(row[0]), text[1], f"{text[2]}:{text[3]}" if text[2] else None,
                   text[4], float(text[5] or 0),
                   float(text[6]) if text[6] is not None else None, text[7])


def promote(conn: Connection, wait_s: int = 60) -> bool:
    """Promote the standby ``conn`` reaches; whether it finished within ``wait_s``."""
    row = conn.execute("SELECT pg_promote(true, %s)", (wait_s,)).fetchone()
    return bool(row and row[0])


def current_lsn(conn: Connection) -> str:
    """Where the primary ``conn`` reaches has written its WAL to."""
    row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    return str(row[0]) if row else ""


def replayed(conn: Connection, lsn: str) -> bool:
    """Whether the standby ``conn`` reaches has replayed up to ``lsn``."""
    row = conn.execute("SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), %s::pg_lsn) >= 0",
                       (lsn,)).fetchone()
    return bool(row and row[0])


def repoint(conn: Connection, host: str, port: int) -> None:
    """Tell the standby ``conn`` reaches to stream from ``host``:``port``: its
    ``primary_conninfo`` with the new host and port (the rest kept), reloaded;
    PostgreSQL follows the new primary's timeline by itself."""
    from psycopg import sql  # noqa: PLC0415
    from psycopg.conninfo import conninfo_to_dict, make_conninfo  # noqa: PLC0415

    row = conn.execute("SHOW primary_conninfo").fetchone()
    info: dict[str, Any] = conninfo_to_dict(str(row[0]) if row else "")
    info |= {"host": host, "port": str(port)}
    conn.execute(sql.SQL("ALTER SYSTEM SET primary_conninfo = {}").format(
        sql.Literal(make_conninfo("", **info))))
    conn.execute("SELECT pg_reload_conf()")


def lsn_number(lsn: str | None) -> int:
    """A PostgreSQL LSN (``16/B374D848``) as a number; 0 for none."""
    if not lsn or "/" not in lsn:
        return 0
    high, low = lsn.split("/", 1)
    return (int(high, 16) << 32) + int(low, 16)
