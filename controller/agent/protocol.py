"""The host agent's wire format: every request relctl sends a host and every reply it reads.

One protocol, one program: the controller sends the agent's sources and then one JSON
request on stdin (``controller/adapters/host_agent.py``, over ssh or an Ansible task); the
agent (``controller/agent/commands.py``) answers with one JSON reply on stdout. This module
is the first source the agent runs, so the host reads the same types the controller's
``mypy --strict`` checks. Stdlib only, and no annotation is evaluated at run time: it runs
under each host's own Python (``MIN_PYTHON``).

    command      request                 reply
    capture      CaptureRequest          CaptureReply   items into the host's copy
    restore      RestoreRequest          RestoreReply   put back, data carried, verified
    verify       VerifyRequest           VerifyReply    the host against an index
    services     ServicesRequest         ServicesReply  stop or start the service items
    copy_data    CopyDataRequest         CopyDataReply  consistent copies of the databases
    load_data    LoadDataRequest         LoadDataReply  replica databases into the live ones
    litestream   LitestreamRequest       LitestreamReply  start|status|stop|follow|restore
    stop_sessions StopSessionsRequest    StopSessionsReply  what a cancelled release left
    hello        HelloRequest            HelloReply     the host answers: its Python, name

Every reply has ``ok`` and, when not ok, ``error``; any exception on the host is such a
reply, never a traceback.
"""

from __future__ import annotations

import socket
import sys
from typing import Any, TypedDict

MIN_PYTHON = (3, 8)
"""The oldest Python the agent runs on (checked by ``vermin`` in CI, and by the agent)."""


class ItemSpec(TypedDict, total=False):
    """One configuration item as the agent reads it (``planning.release.agent_item``)."""

    kind: str  # file | directory | artifact | package | service | data
    name: str
    path: str  # file, directory, data (sqlite)
    root: str  # artifact
    version: str  # package
    manager: str  # package: pip | apt
    venv: str  # package (pip)
    start: str  # service
    stop: str  # service
    check: str  # service
    engine: str  # data
    conversion: str  # data: the controller's playbook (not used on the host)
    reversible: bool  # data
    on_rollback: str  # data: keep | restore | discard
    rollback_rows: dict[str, str | None]  # data: old table -> SELECT over the new schema


class Entry(TypedDict, total=False):
    """One item in a snapshot's index, as the agent captured it."""

    kind: str
    absent: bool
    object: str  # sha256 of the payload (file, SQLite backup)
    tree: str  # sha256 of a tree's member list (directory, artifact)
    digest: str  # content digest (files: sha256; trees: tree digest; sqlite: logical)
    bytes: int
    mode: int
    uid: int
    gid: int
    current: str | None  # artifact: the ``current`` link's target
    release: str  # artifact: the release folder it names
    dangling: bool  # artifact: the link names no folder
    type: str  # file: "link" or "fifo" when the item is one (no type: a regular file)
    target: str  # file of type link: where the link points (never followed)
    installed: str | None  # package
    running: bool  # service
    payload: str  # copy_data: the file name of the database copy
    sha256: str  # copy_data: the copy's sha256


class CarriedRows(TypedDict):
    """The rows a rollback carried into the restored snapshot (``sqlite_carry``)."""

    tables: dict[str, dict[str, int]]  # table -> counts (inserted, updated, ..., dropped)
    listed: list[dict[str, Any]]  # rows not carried or dropped: table, op, row, reason
    not_carried: int


class DataReport(TypedDict, total=False):
    """What a rollback did with one data item, for the catch-up report."""

    decision: str  # unchanged | kept | carried | discarded | restored
    why: str
    digest: str  # the logical digest the host must now show
    tables: dict[str, dict[str, int]]
    listed: list[dict[str, Any]]
    not_carried: int


class Reply(TypedDict, total=False):
    ok: bool
    error: str


class CaptureRequest(TypedDict):
    command: str  # "capture"
    items: list[ItemSpec]
    dir: str
    scope: str
    snapshot: int
    known: list[str]
    keep: list[int]


class CaptureReply(Reply, total=False):
    index: dict[str, Entry]
    refused: bool  # an item cannot be captured as it is (bad input): nothing was captured
    objects: dict[str, str]  # sha256 -> base64: the objects the controller lacks


class RestoreRequest(TypedDict):
    command: str  # "restore"
    items: list[ItemSpec]
    dir: str
    scope: str
    snapshot: int
    index: dict[str, Entry]
    objects: dict[str, str]  # sha256 -> base64: uploads of objects the host lacked


class RestoreReply(Reply, total=False):
    missing: list[str]  # objects missing or damaged on the host: nothing was touched
    restored: dict[str, str]  # item -> how (switched, unpacked, restored, carried, ...)
    mismatches: list[str]
    data: dict[str, DataReport]
    services_down_s: float | None


class VerifyRequest(TypedDict):
    command: str  # "verify"
    items: list[ItemSpec]
    index: dict[str, Entry]


class VerifyReply(Reply, total=False):
    mismatches: list[str]


class ServicesRequest(TypedDict):
    command: str  # "services"
    items: list[ItemSpec]
    running: bool


class ServicesReply(Reply, total=False):
    services: list[str]
    running: bool


class CopyDataRequest(TypedDict):
    command: str  # "copy_data"
    items: list[ItemSpec]


class CopyDataReply(Reply, total=False):
    index: dict[str, Entry]  # item -> payload, sha256, bytes, digest, mode, uid, gid
    payloads: dict[str, str]  # payload name -> base64


class LoadDataRequest(TypedDict):
    command: str  # "load_data"
    items: list[ItemSpec]
    index: dict[str, Entry]
    payloads: dict[str, str]  # payload name -> base64


class LoadDataReply(Reply, total=False):
    digests: dict[str, str]


class LitestreamDb(TypedDict):
    name: str
    path: str
    replica: dict[str, Any]  # Litestream's replica block (type, path or url, ...)
    sync_interval_ms: int


class LitestreamSpec(TypedDict):
    binary: str
    binary_sha256: str  # "": the hosts' own binary, not checked
    config: str
    pidfile: str
    log: str
    warm_dir: str  # a backup host's warm copies, their followers' pid files and logs
    dbs: list[LitestreamDb]


class LitestreamRequest(TypedDict):
    command: str  # "litestream"
    action: str  # start | status | stop | follow | restore
    spec: LitestreamSpec
    fetch: bool  # restore: send the restored copies back


class LitestreamReply(Reply, total=False):
    install: bool  # the binary is missing or not relctl's: install it, then ask again
    running: bool
    pid: int | None
    stopped: int | None  # stop: the pid stopped (None: none of ours ran)
    followers_stopped: list[int]  # stop: the followers of warm copies stopped
    following: dict[str, int | None]  # follow: database -> its follower's pid
    empty: str  # restore: a database with no replica yet (nothing was loaded)
    # status: per database local_txid, replica_txid, replica_at, lag_s; restore: txid,
    # replica_at, payload, bytes, sha256
    dbs: dict[str, dict[str, Any]]
    payloads: dict[str, str]  # restore with fetch: payload name -> base64 copy


class StopSessionsRequest(TypedDict, total=False):
    command: str  # "stop_sessions"
    connections: list[str]  # SSH_CONNECTION values: "client port server port"
    max_age_s: float  # only processes started this many seconds ago or later
    grace_s: float  # SIGTERM, then SIGKILL after this long (default 5)


class SessionProcess(TypedDict):
    pid: int
    command: str


class StopSessionsReply(Reply, total=False):
    stopped: list[SessionProcess]
    left: list[SessionProcess]  # alive even after SIGKILL (the reply is not ok)


class HelloRequest(TypedDict):
    command: str  # "hello"


class HelloReply(Reply, total=False):
    python: str  # the interpreter's version, e.g. "3.11.2"
    hostname: str


def hello(_request: HelloRequest) -> HelloReply:
    """The host answers (continuity preflight: reachable, its Python good enough)."""
    return {"ok": True, "python": ".".join(map(str, sys.version_info[:3])),
            "hostname": socket.gethostname()}


def python_ok() -> str:
    """'' when this Python can run the agent, else why not (the reply's error)."""
    if sys.version_info[:2] >= MIN_PYTHON:
        return ""
    found = ".".join(map(str, sys.version_info[:3]))
    return (f"relctl's host agent needs Python {'.'.join(map(str, MIN_PYTHON))} or newer; "
            f"this host's interpreter is {found} (set ansible_python_interpreter)")
