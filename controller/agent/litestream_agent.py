"""relctl's Litestream agent: run, check, stop and restore Litestream on one host.

One of the host agent's sources (``protocol.py``: the ``litestream`` command, with a
``LitestreamSpec`` and an action). Stdlib only.

    start SPEC    write the Litestream config; start ``litestream replicate`` (detached,
                  pid file) unless it already runs with that config; then its status
    status SPEC   whether it runs, and per database: the local txid, the newest txid in
                  the replica and that transaction's time, and the lag
    stop SPEC     stop the ``litestream replicate`` of the pid file (only that process)
    follow SPEC   on a backup host: keep a warm copy of each database, ``litestream
                  restore -f`` (Litestream's follow mode: restored once, then every new
                  transaction applied as it arrives), detached, a pid file per database
    restore SPEC  write the config; each database's newest state into SPEC.out: from its
                  warm copy when a follower keeps one (the follower stopped once it
                  applied the replica's newest transaction: a failover loads only a local
                  file), else ``litestream restore``; then copied into the live database
                  through SQLite's online backup API (the service keeps running)

A binary that is missing or not the one relctl ships (``binary_sha256``) is answered with
``install``: the controller installs it and asks again. The config is written as JSON,
which YAML (Litestream's format) reads as is.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import sqlite3
import subprocess
import tempfile
import time
from datetime import datetime
from pathlib import Path

if __name__ != "relctl_agent":  # on a host, protocol.py ran first in this namespace
    from controller.agent.protocol import (
        LitestreamDb,
        LitestreamReply,
        LitestreamRequest,
        LitestreamSpec,
    )
    from controller.agent.sessions import process_start, stop_processes
    from controller.agent.snapshot_agent import backup_database
LTX_TIMESTAMP = slice(32, 40)  # LTX header: milliseconds since the epoch, big-endian


def write_config(spec: LitestreamSpec) -> Path:
    config = Path(spec["config"])
    config.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    dbs = [{"path": db["path"],
            "replica": {**db["replica"], "sync-interval": f"{db['sync_interval_ms']}ms"}}
           for db in spec["dbs"]]
    text = json.dumps({"dbs": dbs}, indent=1)
    tmp = config.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.chmod(0o600)  # a replica block may hold credentials
    tmp.replace(config)
    return config


def run_litestream(spec: LitestreamSpec, command: str, *args: str
                   ) -> subprocess.CompletedProcess[str]:
    """``litestream COMMAND -config CONFIG ARGS`` (flags go before the database path)."""
    return subprocess.run([spec["binary"], command, "-config", spec["config"], *args],
                          capture_output=True, text=True, timeout=300, check=False)


def running(spec: LitestreamSpec) -> int | None:
    """The pid of ``litestream replicate`` with this config, from the pid file."""
    try:
        pid = int(Path(spec["pidfile"]).read_text().strip())
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    wanted = [b"replicate", os.fsencode(spec["config"])]
    return pid if all(part in argv for part in wanted) else None  # not a reused pid


def start(spec: LitestreamSpec) -> LitestreamReply:
    write_config(spec)
    if running(spec) is None:
        log = Path(spec["log"])
        log.parent.mkdir(parents=True, exist_ok=True)
        Path(spec["pidfile"]).parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            child = subprocess.Popen(
                [spec["binary"], "replicate", "-config", spec["config"]],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True)
        Path(spec["pidfile"]).write_text(f"{child.pid}\n")
        time.sleep(0.5)
        if child.poll() is not None:
            tail = log.read_text(errors="replace")[-600:]
            return {"ok": False, "error": f"litestream replicate exited {child.returncode}: "
                                          f"{tail}"}
    return status(spec)


def status(spec: LitestreamSpec) -> LitestreamReply:
    pid = running(spec)
    local = _local_txids(spec)
    dbs = {}
    for db in spec["dbs"]:
        txid, at = newest_replicated(spec, db)
        mine = local.get(db["path"])
        behind = mine is not None and (txid is None or mine > txid)
        dbs[db["name"]] = {
            "local_txid": mine, "replica_txid": txid, "replica_at": at,
            "lag_s": (round(max(0.0, time.time() - at), 3) if behind and at is not None
                      else None if behind else 0.0)}
    return {"ok": True, "running": pid is not None, "pid": pid, "dbs": dbs}


def _local_txids(spec: LitestreamSpec) -> dict[str, int]:
    result = run_litestream(spec, "status", "-json")
    try:
        rows = json.loads(result.stdout) if result.returncode == 0 else []
    except json.JSONDecodeError:
        return {}
    found = {}
    for row in rows if isinstance(rows, list) else []:
        txid = str(row.get("local_txid") or "")
        if row.get("database") and txid and all(c in "0123456789abcdefABCDEF" for c in txid):
            found[str(row["database"])] = int(txid, 16)
    return found


def newest_replicated(spec: LitestreamSpec, db: LitestreamDb, txid: int | None = None
                      ) -> tuple[int | None, float | None]:
    """The newest transaction in the replica (or ``txid``) and when it was shipped
    (epoch seconds): from the LTX file's header on a file replica (milliseconds), else
    from ``litestream ltx`` (whole seconds, rounded down: the age is never understated)."""
    result = run_litestream(spec, "ltx", "-json", "-level", "all", db["path"])
    try:
        files = json.loads(result.stdout) if result.returncode == 0 else []
    except json.JSONDecodeError:
        files = []
    if not files:
        return None, None
    newest = txid if txid is not None else max(int(f["max_txid"], 16) for f in files)
    times = [datetime.fromisoformat(f["timestamp"].replace("Z", "+00:00")).timestamp()
             for f in files if int(f["max_txid"], 16) == newest]
    precise = _header_times(db, newest)
    at = min(precise) if precise else min(times) if times else None
    return newest, at


def _header_times(db: LitestreamDb, txid: int) -> list[float]:
    replica = db["replica"]
    if replica.get("type") != "file" or not replica.get("path"):
        return []
    times = []
    for ltx in Path(replica["path"]).glob(f"ltx/*/*-{txid:016x}.ltx"):
        with ltx.open("rb") as f:
            header = f.read(LTX_TIMESTAMP.stop)
        if header[:4] == b"LTX1" and len(header) == LTX_TIMESTAMP.stop:
            times.append(int.from_bytes(header[LTX_TIMESTAMP], "big") / 1000)
    return times


def stop(spec: LitestreamSpec) -> LitestreamReply:
    """Stop ``litestream replicate`` (the writer) and every follower (a backup host)."""
    pid = running(spec)
    if pid is not None:
        _stop_pid(pid, 10)
        Path(spec["pidfile"]).unlink(missing_ok=True)  # only ours: another config's stays
    followers = [stop_following(spec, db) for db in spec["dbs"]]
    return {"ok": True, "stopped": pid, "followers_stopped": [p for p in followers if p]}


def _stop_pid(pid: int, grace: float) -> None:
    """Stop ``pid`` (``sessions.stop_processes``: SIGTERM, SIGKILL after ``grace``)."""
    start = process_start(pid)
    if start is not None:
        stop_processes({pid: start}, grace)


FOLLOW_INTERVAL = "100ms"  # how often a follower polls the replica for new transactions
APPLIED = re.compile(r"(?:to_txid|txid)=([0-9a-fA-F]{16})")


def _warm(spec: LitestreamSpec, db: LitestreamDb, suffix: str) -> Path:
    """The warm copy of ``db`` (``.db``), its follower's pid file and log."""
    return Path(spec["warm_dir"]) / f"{db['name']}{suffix}"


def following(spec: LitestreamSpec, db: LitestreamDb) -> int | None:
    """The pid of the follower keeping ``db``'s warm copy, from its pid file."""
    try:
        pid = int(_warm(spec, db, ".pid").read_text().strip())
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    wanted = [b"restore", b"-f", os.fsencode(str(_warm(spec, db, ".db")))]
    return pid if all(part in argv for part in wanted) else None  # not a reused pid


def follow(spec: LitestreamSpec) -> LitestreamReply:
    """Start a follower for each database that has none (a new warm copy, restored in
    full first); then which pid follows which database."""
    write_config(spec)
    started = []
    for db in spec["dbs"]:
        if following(spec, db) is not None:
            continue
        deadline = time.monotonic() + 10  # a writer just started ships its first snapshot
        while newest_replicated(spec, db)[0] is None and time.monotonic() < deadline:
            time.sleep(0.2)
        warm = _warm(spec, db, ".db")
        warm.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        for stale in (warm, Path(f"{warm}-wal"), Path(f"{warm}-shm")):
            stale.unlink(missing_ok=True)
        with _warm(spec, db, ".log").open("wb") as log:
            child = subprocess.Popen(
                [spec["binary"], "restore", "-config", spec["config"], "-f",
                 "-follow-interval", FOLLOW_INTERVAL, "-o", str(warm), db["path"]],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True)
        _warm(spec, db, ".pid").write_text(f"{child.pid}\n")
        started.append((db, child))
    for db, child in started:
        deadline = time.monotonic() + 5
        while child.poll() is None and applied(spec, db) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if child.poll() is not None:
            tail = _warm(spec, db, ".log").read_text(errors="replace")[-600:]
            return {"ok": False, "error": f"litestream restore -f of {db['path']} exited "
                                          f"{child.returncode}: {tail}"}
    return {"ok": True, "following": {db["name"]: following(spec, db) for db in spec["dbs"]}}


def applied(spec: LitestreamSpec, db: LitestreamDb) -> int | None:
    """The newest transaction the follower of ``db`` applied, from its log."""
    try:
        text = _warm(spec, db, ".log").read_text(errors="replace")
    except OSError:
        return None
    found = APPLIED.findall(text)
    return int(found[-1], 16) if found else None


def stop_following(spec: LitestreamSpec, db: LitestreamDb) -> int | None:
    """Stop the follower of ``db`` (SIGTERM, SIGKILL after 5 s); the pid it had."""
    pid = following(spec, db)
    if pid is not None:
        _stop_pid(pid, 5)
    _warm(spec, db, ".pid").unlink(missing_ok=True)
    return pid


def warm_copy(spec: LitestreamSpec, db: LitestreamDb, copy: Path) -> int | None:
    """``db``'s newest replicated state from its warm copy, into ``copy``: the follower
    stopped once it applied the replica's newest transaction, the copy checked
    (``quick_check``); its txid, or None when there is no such warm copy (no follower,
    behind after 3 s, or damaged): the caller restores from the replica."""
    if following(spec, db) is None:
        return None
    newest, _ = newest_replicated(spec, db)
    deadline = time.monotonic() + 3
    while newest is not None and (applied(spec, db) or 0) < newest \
            and time.monotonic() < deadline:
        time.sleep(0.02)
    stop_following(spec, db)
    done = applied(spec, db)
    if newest is None or done is None or done < newest:
        return None
    warm = _warm(spec, db, ".db")
    try:
        backup_database(warm, copy)
        check = sqlite3.connect(str(copy))
        try:
            ok = check.execute("PRAGMA quick_check").fetchone()[0] == "ok"
        finally:
            check.close()
    except sqlite3.Error:
        return None
    return done if ok else None


def restore_replica(spec: LitestreamSpec, out: Path) -> LitestreamReply:
    """Each database's newest state (its warm copy, else ``litestream restore``) into
    ``out``, loaded into the live one."""
    write_config(spec)
    restored = {}
    for db in spec["dbs"]:
        copy = out / f"{db['name']}.db"
        copy.unlink(missing_ok=True)
        txid = warm_copy(spec, db, copy)
        warm = txid is not None
        if txid is None:
            copy.unlink(missing_ok=True)
            result = run_litestream(spec, "restore", "-json", "-force", "-if-replica-exists",
                                    "-o", str(copy), db["path"])
            if result.returncode != 0:
                return {"ok": False, "error": f"litestream restore of {db['path']} failed: "
                        f"{(result.stderr or result.stdout).strip()[-600:]}"}
            if not copy.exists():
                return {"ok": True, "dbs": {}, "empty": db["name"]}  # no replica yet
            summary = json.loads(result.stdout[result.stdout.index("{"):])
            txid = int(summary["txid"], 16)
        _, at = newest_replicated(spec, db, txid)
        Path(db["path"]).parent.mkdir(parents=True, exist_ok=True)
        backup_database(copy, Path(db["path"]))
        restored[db["name"]] = {"txid": txid, "replica_at": at, "payload": copy.name,
                                "bytes": copy.stat().st_size, "warm": warm,
                                "sha256": hashlib.sha256(copy.read_bytes()).hexdigest()}
    return {"ok": True, "dbs": restored}


def litestream(request: LitestreamRequest) -> LitestreamReply:
    """The ``litestream`` command: check the binary, run the action. A restore works in a
    private folder, removed after; asked to ``fetch``, it sends the restored copies back."""
    spec = request["spec"]
    binary = Path(spec["binary"])
    if spec["binary_sha256"] and (not binary.is_file() or hashlib.sha256(
            binary.read_bytes()).hexdigest() != spec["binary_sha256"]):
        return {"ok": False, "install": True, "error": f"{binary} is not relctl's litestream"}
    action = request["action"]
    if action != "restore":
        return {"start": start, "status": status, "stop": stop, "follow": follow}[action](spec)
    with tempfile.TemporaryDirectory(prefix="relctl-litestream-") as out:
        reply = restore_replica(spec, Path(out))
        if request["fetch"] and reply.get("ok"):
            reply["payloads"] = {
                d["payload"]: base64.b64encode((Path(out) / d["payload"]).read_bytes()).decode()
                for d in reply.get("dbs", {}).values()}
    return reply
