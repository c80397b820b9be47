"""relctl's Litestream agent: run, check, stop and restore Litestream on one host.

One of the host agent's sources (``protocol.py``: the ``litestream`` command, with a
``LitestreamSpec`` and an action). Stdlib only.

    start SPEC    write the Litestream config; start ``litestream replicate`` (detached,
                  pid file) unless it already runs with that config; then its status
    status SPEC   whether it runs, and per database: the local txid, the newest txid in
                  the replica and that transaction's time, and the lag
    stop SPEC     stop the ``litestream replicate`` of the pid file (only that process)
    restore SPEC  write the config; ``litestream restore`` each database's newest state
                  into SPEC.out, then copy it into the live database through SQLite's
                  online backup API (the service keeps running)

A binary that is missing or not the one relctl ships (``binary_sha256``) is answered with
``install``: the controller installs it and asks again. The config is written as JSON,
which YAML (Litestream's format) reads as is.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
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
    pid = running(spec)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        if Path(f"/proc/{pid}").exists():
            os.kill(pid, signal.SIGKILL)
    Path(spec["pidfile"]).unlink(missing_ok=True)
    return {"ok": True, "stopped": pid}


def restore_replica(spec: LitestreamSpec, out: Path) -> LitestreamReply:
    """``litestream restore`` of each database into ``out``, loaded into the live one."""
    write_config(spec)
    restored = {}
    for db in spec["dbs"]:
        copy = out / f"{db['name']}.db"
        copy.unlink(missing_ok=True)
        result = run_litestream(spec, "restore", "-json", "-force", "-if-replica-exists", "-o",
                            str(copy), db["path"])
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
                                "bytes": copy.stat().st_size,
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
        return {"start": start, "status": status, "stop": stop}[action](spec)
    with tempfile.TemporaryDirectory(prefix="relctl-litestream-") as out:
        reply = restore_replica(spec, Path(out))
        if request["fetch"] and reply.get("ok"):
            reply["payloads"] = {
                d["payload"]: base64.b64encode((Path(out) / d["payload"]).read_bytes()).decode()
                for d in reply.get("dbs", {}).values()}
    return reply
