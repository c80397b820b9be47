"""PostgreSQL's own streaming replication for a plan's PostgreSQL data: a standby of the
database's cluster on each backup host (``pg_basebackup -R``, through
``relctl_pg_standby.yml``), promoted at failover (``pg_promote()``); failback rebuilds the
old primary as a standby of the promoted one and switches over."""

from __future__ import annotations

import base64
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from controller.adapters import postgresql as pg
from controller.adapters.postgresql import Standby
from controller.engine.continuity.records import ReplicaRecord
from controller.engine.continuity.replication import iso
from controller.engine.continuity.services import Services
from controller.engine.continuity.site import Site
from controller.errors import ContinuityError, DataUnreachableError, InputError, RelctlError
from controller.journal import ContinuityRecord
from controller.models.continuity import ReplicatedData
from controller.models.rows import TableRows

if TYPE_CHECKING:  # psycopg (under the engine) is imported when a standby is reached
    from controller.data.postgresql import PostgresEngine


@dataclass(frozen=True)
class PostgresReplication:
    """PostgreSQL's own streaming replication: a standby of the database's cluster on each
    backup host (``pg_basebackup -R``), promoted at failover (``pg_promote()``); failback
    rebuilds the old primary as a standby of the promoted one, switches over, and makes
    the backups standbys again. It needs the site and the shared services: no copies of
    its own."""

    site: Site
    services: Services
    method = "postgresql"

    def replicate(self) -> ContinuityRecord:
        record = self.services.begin("replication", {
            "method": self.method, "items": [d.name for d in self.site.plan.data],
            "targets": self.site.backups})
        try:
            standbys = {d.name: self._ensure(d, self.site.backups) for d in self.site.plan.data}
        except RelctlError as error:
            self.services.journal.end_continuity(record, "failed", {"error": error.message})
            raise
        now = time.time()
        as_of = [now if s["unreplayed_bytes"] == 0 else s["replay_at"]
                 for hosts in standbys.values() for s in hosts.values()]
        oldest = None if None in as_of else min(float(a) for a in as_of if a is not None)
        lag = None if oldest is None else round(max(0.0, now - oldest), 3)
        self.services.progress(f"standbys streaming on {', '.join(self.site.backups)}; lag "
                               f"{'unknown' if lag is None else f'{lag}s'}")
        out = self._keep_out()
        return self.services.journal.end_continuity(record, "ok", {
            "captured_at": iso(oldest), "standbys": standbys, "lag_s": lag,
            "loaded_on": [], "bytes": 0, "running": True, "out_of_service": out})

    def restore(self, hosts: list[str], tag: str, *, only_missing: bool
                ) -> tuple[ReplicaRecord | None, str]:
        if not only_missing:
            raise ContinuityError(
                "a test failover cannot rehearse on a PostgreSQL standby: bringing it up "
                "means promoting it, which ends its replication",
                hint="rehearse with relctl drill site-loss on a staging inventory")
        target = self._most_advanced(hosts)
        record = self.services.begin("replication", {
            "method": self.method, "promote": target,
            "items": [d.name for d in self.site.plan.data]})
        others = [h for h in hosts if h != target]
        try:
            as_of = [self._promote(d, target) for d in self.site.plan.data]
            lost = sorted({h for d in self.site.plan.data for h in self._repoint(d, others,
                                                                          target)})
        except RelctlError as error:
            self.services.journal.end_continuity(record, "failed", {"error": error.message})
            raise
        oldest = None if None in as_of else min(a for a in as_of if a is not None)
        done = self.services.journal.end_continuity(record, "ok", {
            "captured_at": iso(oldest), "loaded_on": [target], "promoted": target,
            "repointed": [h for h in others if h not in lost], "bytes": 0})
        note = "".join([
            f"; {', '.join(h for h in others if h not in lost)} re-pointed at it"
            if len(lost) < len(others) else "",
            f"; {', '.join(lost)} did not answer (rebuilt after the switch)" if lost else ""])
        return ReplicaRecord.of(done), (f"standby on {target} promoted (last replayed "
                                        f"transaction {iso(oldest) or 'unknown'}){note}")

    def settle(self) -> str | None:
        """After the switch: every other backup's standby streams from the promoted one
        (a re-pointed standby follows its new timeline; one that cannot is rebuilt from
        it); the failover's RTO does not wait for this."""
        if len(self.site.backups) < 2:
            return None
        promoted = self._serving()
        others = [h for h in self.site.backups if h != promoted]
        source = self.site.address(promoted)
        rebuilt = []
        for data in self.site.plan.data:
            engine, port = self._engine(data)
            for host in others:
                address = self.site.address(host)
                try:
                    self._wait_streaming(engine, address, port, source, port, timeout=20)
                except ContinuityError:
                    self.services.progress(f"{data.name}: {host} does not follow "
                                           f"{promoted}: base backup of {promoted} onto {host}")
                    self._rebuild(data, host, source, port)
                    self._wait_streaming(engine, address, port, source, port)
                    rebuilt.append(host)
        return (f"{', '.join(others)} stream from {promoted}"
                + (f" ({', '.join(sorted(set(rebuilt)))} rebuilt)" if rebuilt else ""))

    def resume(self) -> str:
        for data in self.site.plan.data:
            self._ensure(data, self.site.backups)
        self._keep_out()
        return (f"standbys streaming again on {', '.join(self.site.backups)} (out of the LB's "
                "service until a failover promotes one)")

    def stop(self) -> str:
        return ("streaming replication is the servers' own: stop it on the standbys "
                "(standby.stop), relctl runs nothing for it")

    # -- failback ------------------------------------------------------------------------

    def catch_up_tables(self, _store: Path, _tag: str
                        ) -> tuple[dict[str, TableRows], dict[str, TableRows]]:
        old: dict[str, TableRows] = {}
        new: dict[str, TableRows] = {}
        promoted = self._serving()
        for data in self.site.plan.data:
            engine, port = self._engine(data)
            old.update(engine.tables())
            new.update(engine.tables(self.site.address(promoted), port))
        return old, new

    def final_copy(self, _store: Path, _tag: str, _hold: Callable[[], None]) -> None:
        """Nothing held: the old primary streams every write until the switchover, which
        stops the promoted cluster before it promotes the old primary."""
        return None

    def bring_back(self, _store: Path, _tag: str) -> str:
        """The old primary rebuilt as a standby of the promoted backup, caught up, then a
        switchover: the backup stopped cleanly, the old primary promoted, the backups
        rebuilt as its standbys."""
        promoted, writer = self._serving(), self.site.writer()
        for data in self.site.plan.data:
            engine, port = self._engine(data)
            assert data.standby is not None and data.postgresql is not None
            source = self.site.address(promoted)
            self._rebuild(data, writer, source, port)
            old = self._wait_streaming(engine, data.postgresql.host, data.postgresql.port,
                                       source, port)
            with engine.connect(source, port) as conn:
                final = pg.current_lsn(conn)
            self._run(data, [promoted], "stop")
            self._wait_replayed(engine, data.postgresql.host, data.postgresql.port, final)
            with engine.connect() as conn:
                pg.promote(conn)
            self.services.progress(f"{data.name}: {old.host} promoted after a clean switchover")
            self._ensure(data, self.site.backups, rebuild_primaries=True)
        return (f"{writer}'s cluster caught up with {promoted}'s and promoted; "
                f"{', '.join(self.site.backups)} standbys again")

    # -- the pieces ----------------------------------------------------------------------

    def _keep_out(self) -> list[str]:
        """A standby takes no writes: its hosts stay out of the LB's service (maintenance)
        until a failover has promoted one and switches them in; else the LB would send
        them traffic the moment the primaries go down, before the promotion. Saved so a
        reload keeps it (only when it changed). The backups, as a list."""
        if sorted(self.site.lb.in_maintenance(self.site.backups)) == sorted(self.site.backups):
            return self.site.backups
        self.site.lb.activate(active=[], standby=self.site.backups)
        self.services.progress(f"{', '.join(self.site.backups)} out of the LB's service "
                               "while standbys")
        warning = self.site.lb.persist()
        if warning:
            self.services.progress(f"warning: {warning}")
        return self.site.backups

    def _most_advanced(self, hosts: list[str]) -> str:
        """The backup whose standby has received the most WAL (the first that answers
        on a tie; the first host when none answers: its promotion then says why). The
        others can follow it: none is ahead of it."""
        if len(hosts) == 1:
            return hosts[0]
        engine, port = self._engine(self.site.plan.data[0])
        states = [s for h in hosts
                  if (s := self._probe(engine, h, self.site.address(h), port))]
        if not states:
            return hosts[0]
        return max(states, key=lambda s: s.received).host  # max keeps the first of equals

    def _serving(self) -> str:
        """The backup whose cluster a failover promoted (it answers out of recovery);
        the first backup when none does."""
        engine, port = self._engine(self.site.plan.data[0])
        for host in self.site.backups:
            state = self._probe(engine, host, self.site.address(host), port)
            if state is not None and not state.in_recovery:
                return host
        return self.site.backups[0]

    def _repoint(self, data: ReplicatedData, hosts: list[str],
                 target: str) -> list[str]:
        """Each of ``hosts``' standbys told to stream from ``target``'s cluster (its
        ``primary_conninfo`` with the new host and port, reloaded: PostgreSQL follows the
        promoted timeline by itself); returns those that did not answer."""
        engine, port = self._engine(data)
        lost = []
        for host in hosts:
            try:
                with engine.connect(self.site.address(host), port) as conn:
                    pg.repoint(conn, self.site.address(target), port)
            except RelctlError:
                lost.append(host)
        return lost

    @staticmethod
    def _engine(data: ReplicatedData) -> tuple[PostgresEngine, int]:
        assert data.postgresql is not None and data.standby is not None
        from controller.data.postgresql import PostgresEngine  # noqa: PLC0415 - see above

        return PostgresEngine(data), data.standby.port or data.postgresql.port

    def _ensure(self, data: ReplicatedData, hosts: list[str], *,
                rebuild_primaries: bool = False) -> dict[str, dict[str, Any]]:
        """Every host's cluster a streaming standby of the primary (rebuilt where it is
        not); each one's state."""
        engine, port = self._engine(data)
        assert data.postgresql is not None
        primary = data.postgresql
        engine.check()  # the primary answers the plan's login: else nothing is touched
        states = {}
        for host in hosts:
            address = self.site.address(host)
            try:
                state: Standby | None = self._state(engine, host, address, port)
            except DataUnreachableError:
                state = None  # no server answers there: a standby to (re)build
            except InputError as error:
                if "does not exist" not in error.message:
                    raise  # a refused login: nothing is touched
                state = None  # a cluster without the database: a fresh one
            if state is None or not state.streams_from(primary.host, primary.port):
                if state is not None and not state.in_recovery and not rebuild_primaries:
                    raise ContinuityError(
                        f"{host}'s cluster ({address}:{port}) is a primary holding database "
                        f"{primary.database} (a promoted standby?): relctl does not overwrite "
                        "it", hint="relctl failback brings the primary site back and "
                        "rebuilds the standbys")
                self.services.progress(f"{data.name}: base backup of "
                                       f"{primary.host}:{primary.port} onto {host}")
                self._rebuild(data, host, primary.host, primary.port)
                state = self._wait_streaming(engine, address, port, primary.host,
                                             primary.port)
            states[host] = dataclasses.asdict(state)
        return states

    @staticmethod
    def _state(engine: PostgresEngine, host: str, address: str, port: int) -> Standby:
        """The replication state of the cluster at ``address``:``port`` (raises relctl's
        login errors)."""
        with engine.connect(address, port) as conn:
            return pg.standby_state(conn, host)

    def _probe(self, engine: PostgresEngine, host: str, address: str, port: int
               ) -> Standby | None:
        """The state, or None while the cluster does not answer (starting, promoting)."""
        try:
            return self._state(engine, host, address, port)
        except RelctlError:
            return None

    def _wait_streaming(self, engine: PostgresEngine, address: str, port: int,
                        source: str, source_port: int, timeout: float = 120) -> Standby:
        deadline = time.monotonic() + timeout
        while True:
            state = self._probe(engine, address, address, port)
            if state is not None and state.streams_from(source, source_port):
                return state
            if time.monotonic() > deadline:
                raise ContinuityError(f"the standby at {address}:{port} does not stream from "
                                      f"{source}:{source_port} after {timeout:.0f}s")
            time.sleep(0.5)

    def _wait_replayed(self, engine: PostgresEngine, address: str, port: int, lsn: str,
                       timeout: float = 60) -> None:
        """Until the standby at ``address``:``port`` has replayed up to ``lsn`` (one query
        a poll; a standby that does not answer yet is asked again)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with engine.connect(address, port) as conn:
                    if pg.replayed(conn, lsn):
                        return
            except RelctlError:
                pass  # not answering yet
            time.sleep(0.2)
        raise ContinuityError(f"the standby at {address}:{port} did not replay up to {lsn}")

    def _promote(self, data: ReplicatedData, host: str) -> float | None:
        """Promote ``host``'s standby once it replayed all it received; the commit time
        of its last replayed transaction (what RPO counts from)."""
        engine, port = self._engine(data)
        address = self.site.address(host)
        deadline = time.monotonic() + 10
        state = self._probe(engine, host, address, port)
        while state is not None and state.unreplayed_bytes > 0 and time.monotonic() < deadline:
            time.sleep(0.1)
            state = self._probe(engine, host, address, port)
        if state is None:
            raise ContinuityError(f"{data.name}: the standby on {host} ({address}:{port}) "
                                  "does not answer")
        if not state.in_recovery:
            return state.replay_at  # promoted already (a failover run again)
        with engine.connect(address, port) as conn:
            done = pg.promote(conn)
        if not done:
            raise ContinuityError(f"{data.name}: pg_promote() on {host} did not finish in 60s")
        return state.replay_at

    def _rebuild(self, data: ReplicatedData, host: str, source: str,
                 source_port: int) -> None:
        self._run(data, [host], "rebuild", relctl_pg_source_host=source,
                  relctl_pg_source_port=source_port)

    def _run(self, data: ReplicatedData, hosts: list[str], action: str,
             **extravars: Any) -> None:
        standby, db = data.standby, data.postgresql
        assert standby is not None and db is not None
        self.site.run_bundled("relctl_pg_standby.yml", hosts, f"pg-{action}", {
                "relctl_action": action,
                "relctl_pg_start_b64": _b64(standby.start),
                "relctl_pg_stop_b64": _b64(standby.stop),
                "relctl_pg_data_dir": standby.data_dir, "relctl_pg_os_user": standby.os_user,
                "relctl_pg_basebackup": (f"{standby.bin_dir}/pg_basebackup"
                                         if standby.bin_dir else "pg_basebackup"),
                "relctl_pg_name": data.name, "relctl_pg_user": db.user,
                "relctl_pg_password_env": db.password_env or "",
                "relctl_pg_password_file": str(db.password_file or ""), **extravars},
            f"{data.name}: {action} of the cluster failed")


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()
