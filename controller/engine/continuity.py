"""Business continuity on real hosts: replicate, fail over, fail back.

    replicate   consistent copy of the data on the writer (SQLite online backup) ->
                fetched, sha256-checked -> loaded into every backup host while it runs ->
                recorded in the journal (what RPO is measured against)
    failover    preflight the backup site (never touches the primary) -> last good
                release and newest replica on it -> HAProxy runtime API: primaries to
                maint (no reload) -> every critical function verified through the LB in
                priority order -> LB state persisted -> RTO and RPO recorded
    failback    old primary's data captured -> primary on the last good release with the
                backup's data -> LB switched back -> verified -> catch-up report
"""

from __future__ import annotations

import base64
import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from controller.adapters import http
from controller.adapters.ansible import (
    Inventory,
    PlaybookResult,
    PlaybookRun,
    failure_summary,
    read_inventory,
    run_playbook,
)
from controller.adapters.haproxy import RuntimeApi
from controller.adapters.testinfra import CheckRun, run_checks
from controller.agent import snapshot_agent
from controller.engine.environment import Environment, environment_for
from controller.engine.snapshots import SnapshotError, unpack_bundle
from controller.errors import ContinuityError, LabError, RelctlError
from controller.journal import ContinuityRecord, Journal, ReleaseRecord
from controller.manifest_loader import (
    ConfigError,
    Problem,
    YamlDocument,
    check_as_released,
    line_of,
    load_manifest,
    read_yaml,
    validate_document,
)
from controller.models.continuity import ContinuityPlan, CriticalFunction
from controller.models.manifest import Manifest
from controller.notify import notify_event
from controller.paths import bundled_playbook
from controller.planning import continuity as plan_logic
from controller.planning.continuity import TableRows, Timeline

Progress = Callable[[str], None]
PLAN_HINT = "relctl init writes a starter continuity plan; the README lists its fields"


def load_plan(path: Path) -> tuple[ContinuityPlan, YamlDocument]:
    """The continuity plan at ``path`` and its document (lines for later errors)."""
    doc = read_yaml(path)
    return validate_document(doc, ContinuityPlan, hint=PLAN_HINT), doc


@dataclass
class Continuity:
    """A continuity plan bound to its inventory, load balancer and journal."""

    plan: ContinuityPlan
    plan_path: Path
    env: Environment
    journal: Journal
    inventory: Inventory
    progress: Progress = lambda _msg: None

    # -- building ------------------------------------------------------------------------

    @classmethod
    def open(cls, state_dir: Path, plan_path: Path, journal: Journal,
             inventory: Path | None = None, progress: Progress = lambda _m: None) -> Continuity:
        """Load and check the plan: its groups must exist in the inventory (exit 2)."""
        plan, doc = load_plan(plan_path)
        env = environment_for(state_dir, inventory or plan.inventory, "the continuity plan",
                              plan.service)
        found = read_inventory(env.inventory, env.ansible_cfg)
        problems = []
        for loc, group in ((("sites", "primary"), plan.sites.primary),
                           (("sites", "backup"), plan.sites.backup),
                           (("lb", "group"), plan.lb.group)):
            if not found.groups.get(group):
                known = ", ".join(sorted(g for g in found.groups if g not in ("all", "ungrouped")))
                problems.append(Problem(str(plan_path), line_of(doc, loc), ".".join(loc),
                                        f"no hosts in inventory group {group!r} of "
                                        f"{env.inventory} (groups: {known or 'none'})"))
        for index, data in enumerate(plan.data):
            if data.source and data.source not in found.groups.get(plan.sites.primary, []):
                problems.append(Problem(str(plan_path), line_of(doc, ("data", index, "source")),
                                        f"data[{index}].source",
                                        f"{data.source!r} is not a host of the primary site"))
        if problems:
            raise ConfigError(problems, hint=PLAN_HINT)
        return cls(plan, plan_path, env, journal, found, progress)

    # -- topology ------------------------------------------------------------------------

    @property
    def primaries(self) -> list[str]:
        return self.inventory.groups[self.plan.sites.primary]

    @property
    def backups(self) -> list[str]:
        return self.inventory.groups[self.plan.sites.backup]

    @property
    def lb_address(self) -> str:
        return self.inventory.addresses[self.inventory.groups[self.plan.lb.group][0]]

    @property
    def lb_url(self) -> str:
        return f"http://{self.lb_address}:{self.plan.lb.port}"

    @property
    def runtime(self) -> RuntimeApi:
        return RuntimeApi(f"{self.lb_address}:{self.plan.lb.runtime_api_port}")

    def host_url(self, host: str, path: str) -> str:
        return f"http://{self.inventory.addresses[host]}:{self.plan.service_port}{path}"

    def writer(self) -> str:
        """The host whose data is replicated: declared, else the first primary."""
        declared = [d.source for d in self.plan.data if d.source]
        return declared[0] if declared else self.primaries[0]

    def last_good(self) -> ReleaseRecord | None:
        return self.journal.last_good_release(self.plan.service, self.plan.environment)

    # -- probes --------------------------------------------------------------------------

    def healthy(self, host: str, timeout: float = 0.5) -> bool:
        return http.request("GET", self.host_url(host, self.plan.health_path),
                            timeout=timeout).status == 200

    def version(self, host: str) -> str | None:
        if self.plan.version_path is None:
            return None
        answer = http.request("GET", self.host_url(host, self.plan.version_path), timeout=1)
        body = answer.json() if answer.status == 200 else None
        return str(body.get("version")) if isinstance(body, dict) else None

    def check(self, function: CriticalFunction) -> http.Answer:
        c = function.check
        return http.request(c.method, self.lb_url + c.path, c.body, c.timeout)

    def passes(self, function: CriticalFunction) -> tuple[bool, http.Answer]:
        answer = self.check(function)
        return answer.status == function.check.expect_status, answer

    def wait_functions(self, started: float, timeout: float) -> dict[str, Any]:
        """Verify every critical function through the LB, most urgent first, until each
        passes or ``timeout``; returns seconds (since ``started``) at which each passed."""
        passed: dict[str, float | None] = {}
        served_by: set[str] = set()
        deadline = time.monotonic() + timeout
        for function in self.plan.by_priority():
            passed[function.name] = None
            while time.monotonic() < deadline:
                ok, answer = self.passes(function)
                if ok:
                    passed[function.name] = time.monotonic() - started
                    served_by.add(answer.served_by)
                    break
                time.sleep(0.05)
        return {"passed_at": passed, "served_by": sorted(s for s in served_by if s)}

    # -- replication ---------------------------------------------------------------------

    def replicate(self) -> ContinuityRecord:
        """Copy the writer's data to every backup host and record it (what RPO counts from)."""
        source, names = self.writer(), [d.name for d in self.plan.data]
        if not self.plan.data:
            raise ContinuityError("the continuity plan declares no data to replicate")
        record = self.journal.begin_continuity(
            "replication", self.plan.service, self.plan.environment,
            {"source": source, "items": names, "targets": self.backups})
        store = self.env.state_dir / "replicas" / str(record)
        captured_at = datetime.now(UTC)
        try:
            index = self.capture(source, store, f"rep{record}")
            self.progress(f"replica of {', '.join(names)} taken on {source}, sha256 checked")
            self.load(self.backups, store / source / "bundle.tar", f"rep{record}")
        except RelctlError as error:
            self.journal.end_continuity(record, "failed", {"error": error.message})
            raise
        self.progress(f"replica loaded on {', '.join(self.backups)}")
        return self.journal.end_continuity(record, "ok", {
            "captured_at": captured_at.isoformat(), "bundle": str(store / source / "bundle.tar"),
            "loaded_on": self.backups,
            "sha256": {n: m.get("sha256") for n, m in index.items()},
            "digest": {n: m.get("digest") for n, m in index.items()},
            "bytes": sum(int(m.get("bytes", 0)) for m in index.values())})

    def capture(self, host: str, store: Path, tag: str) -> dict[str, Any]:
        """A consistent copy of the plan's data on ``host``, fetched to ``store/host``."""
        result = self._run("relctl_snapshot.yml", [host], tag, relctl_store=str(store),
                           relctl_release=tag)
        if not result.succeeded:
            raise ContinuityError(f"cannot copy the data from {host}: {failure_summary(result)}")
        try:
            return unpack_bundle(store / host, host)
        except SnapshotError as error:
            raise ContinuityError(error.message) from error

    def load(self, hosts: list[str], bundle: Path, tag: str) -> None:
        """Load a fetched bundle's databases into ``hosts`` (online backup API)."""
        result = self._run("relctl_replica_load.yml", hosts, tag, relctl_bundle=str(bundle),
                           relctl_tag=tag)
        if not result.succeeded:
            raise ContinuityError(f"cannot load the data on {', '.join(result.failed_hosts)}: "
                                  f"{failure_summary(result)}")

    def _run(self, playbook: str, hosts: list[str], label: str, **extravars: Any) -> PlaybookResult:
        items = [{"kind": "data", "name": d.name, "path": d.path, "engine": d.engine}
                 for d in self.plan.data]
        run = PlaybookRun(
            playbook=bundled_playbook(playbook), inventory=self.env.inventory,
            ansible_cfg=self.env.ansible_cfg, runs_dir=self.env.runs_dir,
            limit=",".join(hosts), label=label,
            extravars={"relctl_hosts": "all", "relctl_agent": snapshot_agent.__file__,
                       "relctl_items_b64": base64.b64encode(json.dumps(items).encode()).decode(),
                       **extravars})
        return run_playbook(run)

    # -- release on a site ---------------------------------------------------------------

    def release_manifest(self, record: ReleaseRecord) -> Manifest:
        """The manifest of the last good release, as it was when it was released."""
        return check_as_released(load_manifest(Path(record.manifest_path)), record,
                                 "restore the manifest as released, or release again")

    def deploy(self, record: ReleaseRecord, hosts: list[str], tag: str) -> None:
        """Put ``hosts`` on the release ``record`` with its own apply playbooks."""
        manifest = self.release_manifest(record)
        for playbook in manifest.playbooks.apply:
            result = run_playbook(PlaybookRun(
                playbook=playbook, inventory=self.env.inventory, ansible_cfg=self.env.ansible_cfg,
                runs_dir=self.env.runs_dir, extravars=dict(manifest.extravars),
                limit=",".join(hosts), label=tag))
            if not result.succeeded:
                raise ContinuityError(f"cannot deploy {record.name} on {', '.join(hosts)}: "
                                      f"{failure_summary(result)}")

    def testinfra(self, record: ReleaseRecord | None, hosts: list[str], tag: str) -> list[str]:
        """The release's testinfra checks on ``hosts``; returns what failed."""
        tests = [self.plan.failover.testinfra] if self.plan.failover.testinfra else []
        env: dict[str, str] = {}
        if record is not None:
            manifest = self.release_manifest(record)
            if not tests:
                tests = [g.tests for g in manifest.gates.testinfra]
            env = {k: v for g in manifest.gates.testinfra for k, v in g.env.items()}
        if not tests:
            return []
        result = run_checks(CheckRun(tests=tests, hosts=hosts, inventory=self.env.inventory,
                                     ansible_cfg=self.env.ansible_cfg,
                                     junit=self.env.state_dir / "continuity" / f"{tag}.xml",
                                     env=env, connections_dir=self.env.connections_dir))
        if result.tests == 0:
            return [f"no testinfra result (see {result.junit.with_suffix('.log')})"]
        return result.failed

    # -- load balancer -------------------------------------------------------------------

    def switch(self, active: list[str], standby: list[str]) -> None:
        """``standby`` servers to maintenance, ``active`` ones ready: no reload."""
        backend = self.plan.backend
        for server in active:
            self.runtime.set_state(backend, server, "ready")
        for server in standby:
            self.runtime.set_state(backend, server, "maint")

    def persist_lb(self) -> str | None:
        """Write HAProxy's server states to its state file; returns a warning on failure."""
        try:
            states = self.runtime.server_states()
        except LabError as error:
            return error.message
        result = run_playbook(PlaybookRun(
            playbook=bundled_playbook("lb_persist_state.yml"), inventory=self.env.inventory,
            ansible_cfg=self.env.ansible_cfg, runs_dir=self.env.runs_dir,
            extravars={"relctl_lb_state": states, "relctl_state_file": self.plan.lb.state_file,
                       "lb_target": self.plan.lb.group}, label="lb-persist"))
        return None if result.succeeded else f"LB state not persisted: {failure_summary(result)}"

    def announce(self, event: Any, reason: str) -> None:
        """Tell the plan's channels (never fails the failover or failback)."""
        plan = self.plan
        contact = plan.contacts[0].channel if plan.contacts else "the operations team"
        notify_event(plan.notify, event, {"service": plan.service,
                                          "environment": plan.environment,
                                          "reason": reason, "contact": contact},
                     self.journal)

    def close(self) -> None:
        self.env.close_connections()


@dataclass
class Outcome:
    """How a failover or failback ended, with its figures, for people and pipelines."""

    kind: str
    record_id: int
    ok: bool
    exit_code: int
    message: str
    figures: dict[str, Any] = field(default_factory=dict)
    timeline: list[tuple[float, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    report: str | None = None


def failover(ctx: Continuity, *, preflight: str | None = None,
             fault_at: float | None = None, detected_at: float | None = None) -> Outcome:
    """Move the service to the backup site. ``fault_at``/``detected_at`` are
    ``time.monotonic()`` readings (a drill knows them); RTO is counted from each."""
    plan, started = ctx.plan, time.monotonic()
    wall_start = datetime.now(UTC)
    mode = preflight or plan.failover.preflight
    timeline, warnings = Timeline(), list[str]()
    record = ctx.journal.begin_continuity("failover", plan.service, plan.environment,
                                          {"preflight": mode, "backups": ctx.backups})
    mark = _marker(timeline, started, ctx.progress)
    mark("failover started")
    try:
        good = ctx.last_good()
        version = good.version if good else None
        _prepare_backups(ctx, good, mode, mark, warnings)
        replica = ctx.journal.last_replication(plan.service, plan.environment)
        _ensure_replica(ctx, replica, mark, warnings)
        switch_start = time.monotonic()
        ctx.switch(active=ctx.backups, standby=ctx.primaries)
        switched = time.monotonic()
        mark(f"HAProxy: {', '.join(ctx.primaries)} in maintenance, "
             f"{', '.join(ctx.backups)} ready")
        verified = ctx.wait_functions(started, plan.failover.verify_timeout)
        verify_end = time.monotonic()
        for name, at in verified["passed_at"].items():
            timeline.add(at if at is not None else verify_end - started,
                         f"{name}: {'verified' if at is not None else 'NOT verified'}")
        if mode == "fast":
            failed = ctx.testinfra(good, ctx.backups, f"failover-{record}")
            mark("testinfra on the backup site: " + ("green" if not failed else
                                                      "FAILED: " + "; ".join(failed[:3])))
            if failed:
                warnings.append("testinfra after the switch failed: " + "; ".join(failed[:5]))
        persisted = ctx.persist_lb()
        if persisted:
            warnings.append(persisted)
        mark("LB state persisted" if not persisted else "LB state NOT persisted")
    except RelctlError as error:
        ctx.journal.end_continuity(record, "failed", {"error": error.message})
        ctx.close()
        raise ContinuityError(f"failover failed: {error.message}", hint=error.hint) from error
    ctx.close()
    recovered = [at for at in verified["passed_at"].values() if at is not None]
    ok = len(recovered) == len(plan.functions)
    last = max(recovered) if ok else None
    figures = {
        "version": version,
        "preflight": mode,
        "preflight_s": round(switch_start - started, 3),
        "switch_s": round(switched - switch_start, 3),
        "verify_s": round(verify_end - switched, 3),
        "rto_from_start_s": rounded(last),
        "rto_from_detection_s": rounded(last + started - detected_at
                                       if last is not None and detected_at else None),
        "rto_from_fault_s": rounded(last + started - fault_at
                                   if last is not None and fault_at else None),
        "functions_at_s": verified["passed_at"],
        "served_by": verified["served_by"],
        "replica_id": replica.id if replica else None,
        "replica_captured_at": replica.detail.get("captured_at") if replica else None,
        "rpo_s": _rpo(replica, wall_start, fault_at, started),
        "started_at": wall_start.isoformat(),
    }
    message = (f"failed over to {', '.join(ctx.backups)} in {figures['rto_from_start_s']}s"
               if ok else "failover switched the LB but some critical functions do not answer")
    if ok and warnings:
        message += f" ({len(warnings)} warnings)"
    ctx.journal.end_continuity(record, "ok" if ok else "failed",
                               {"figures": figures, "timeline": timeline.events,
                                "warnings": warnings})
    ctx.journal.log(None, f"failover {record}: {message}")
    ctx.announce("failover", message)
    return Outcome("failover", record, ok, 0 if ok else int(ContinuityError.exit_code),
                   message, figures, timeline.events, warnings)


def _prepare_backups(ctx: Continuity, good: ReleaseRecord | None, mode: str,
                     mark: Callable[[str], None], warnings: list[str]) -> None:
    """Backups answer and run the last good release (deployed if not); full: testinfra."""
    wanted = good.version if good else None
    if good is None:
        warnings.append("no release is marked good in the journal: the backups keep what "
                        "they run")
    stale = [h for h in ctx.backups if not ctx.healthy(h)
             or (wanted is not None and ctx.version(h) not in (wanted, None))]
    if stale and good is not None:
        mark(f"deploying {good.name} on {', '.join(stale)}")
        ctx.deploy(good, stale, "failover-deploy")
        stale = [h for h in stale if not ctx.healthy(h, timeout=2)]
    if stale:
        raise ContinuityError(f"backup hosts not healthy: {', '.join(stale)}; nothing switched",
                              hint="fix the backup site, or run relctl lab up on the lab")
    mark(f"backup site healthy on {wanted or 'its current release'}")
    if mode == "full":
        failed = ctx.testinfra(good, ctx.backups, "failover-preflight")
        if failed:
            raise ContinuityError("testinfra fails on the backup site: " + "; ".join(failed[:5])
                                  + "; nothing switched")
        mark("testinfra green on the backup site")


def _ensure_replica(ctx: Continuity, replica: ContinuityRecord | None,
                    mark: Callable[[str], None], warnings: list[str]) -> None:
    if replica is None:
        warnings.append("no replication on record: the backups serve their own data")
        return
    missing = [h for h in ctx.backups if h not in replica.detail.get("loaded_on", [])]
    if missing:
        ctx.load(missing, Path(replica.detail["bundle"]), f"rep{replica.id}-late")
        mark(f"replica {replica.id} loaded on {', '.join(missing)}")
    else:
        mark(f"replica {replica.id} of {replica.detail.get('captured_at')} already on the "
             "backup site")


def failback(ctx: Continuity) -> Outcome:
    """Bring the primary site back with the backup's data; report what must be re-entered."""
    plan, started = ctx.plan, time.monotonic()
    timeline, warnings = Timeline(), list[str]()
    record = ctx.journal.begin_continuity("failback", plan.service, plan.environment,
                                          {"primaries": ctx.primaries})
    mark = _marker(timeline, started, ctx.progress)
    store = ctx.env.state_dir / "continuity" / f"failback-{record}"
    writer, active = ctx.writer(), ctx.backups[0]
    try:
        old = ctx.capture(writer, store / "old-primary", f"fb{record}-old")
        mark(f"old primary data captured on {writer}")
        new = ctx.capture(active, store / "backup", f"fb{record}-backup")
        mark(f"backup site data captured on {active}")
        good = ctx.last_good()
        if good is not None:
            ctx.deploy(good, ctx.primaries, f"fb{record}-deploy")
            mark(f"{', '.join(ctx.primaries)} on {good.name}")
        ctx.load(ctx.primaries, store / "backup" / active / "bundle.tar", f"fb{record}")
        mark(f"backup data loaded on {', '.join(ctx.primaries)}")
        down = [h for h in ctx.primaries if not ctx.healthy(h, timeout=2)]
        if down:
            raise ContinuityError(f"primary hosts not healthy: {', '.join(down)}; LB not "
                                  "switched back")
        ctx.switch(active=ctx.primaries, standby=[])
        mark("HAProxy: primary site ready again")
        verified = ctx.wait_functions(started, plan.failover.verify_timeout)
        mark("critical functions verified: " + ", ".join(
            f"{n} {'ok' if at is not None else 'FAILED'}"
            for n, at in verified["passed_at"].items()))
        persisted = ctx.persist_lb()
        if persisted:
            warnings.append(persisted)
    except RelctlError as error:
        ctx.journal.end_continuity(record, "failed", {"error": error.message})
        ctx.close()
        raise ContinuityError(f"failback failed: {error.message}",
                              hint=error.hint or "the backup site still serves; bring the "
                              "primary hosts back (relctl lab up) and run failback again"
                              ) from error
    ctx.close()
    replica = ctx.journal.last_replication(plan.service, plan.environment)
    catch = plan_logic.catch_up(
        _tables(store / "old-primary" / writer / "bundle", old),
        _tables(store / "backup" / active / "bundle", new),
        _replica_tables(replica))
    report = plan_logic.catch_up_markdown(record, catch, replica.detail.get("captured_at")
                                          if replica else None)
    (store / "catch-up.md").write_text(report)
    catch_json = {"missing_on_backup": catch.missing_on_backup,
                  "only_on_backup": catch.only_on_backup,
                  "after_replication": catch.after_replication}
    (store / "catch-up.json").write_text(json.dumps(catch_json, indent=1, default=str))
    ok = all(at is not None for at in verified["passed_at"].values())
    figures = {"seconds": round(time.monotonic() - started, 3), "served_by": verified["served_by"],
               "catch_up": catch_json, "catch_up_report": str(store / "catch-up.md"),
               "to_re_enter": catch.total_missing}
    ctx.journal.end_continuity(record, "ok" if ok else "failed",
                               {"figures": figures, "timeline": timeline.events,
                                "warnings": warnings}, report=report)
    message = (f"failed back to {', '.join(ctx.primaries)}; {catch.total_missing} rows to "
               f"re-enter (catch-up report: {store / 'catch-up.md'})")
    ctx.announce("failback", message)
    return Outcome("failback", record, ok, 0 if ok else int(ContinuityError.exit_code),
                   message, figures, timeline.events, warnings, report)


def _tables(bundle: Path, index: dict[str, Any]) -> dict[str, TableRows]:
    tables: dict[str, TableRows] = {}
    for meta in index.values():
        if meta.get("payload"):
            tables.update(read_tables(bundle / meta["payload"]))
    return tables


def _replica_tables(replica: ContinuityRecord | None) -> dict[str, TableRows] | None:
    if replica is None or not replica.detail.get("bundle"):
        return None
    bundle = Path(replica.detail["bundle"]).parent
    if not (bundle / "bundle" / "index.json").exists():
        return None
    index = json.loads((bundle / "bundle" / "index.json").read_text())
    return _tables(bundle / "bundle", index)


def read_tables(path: Path) -> dict[str, TableRows]:
    """Every table of a SQLite file, rows sorted (read-only)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        names = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        tables = {}
        for name in names:
            cursor = conn.execute(f'SELECT * FROM "{name}"')
            columns = [c[0] for c in cursor.description]
            tables[name] = TableRows(columns, sorted(tuple(r) for r in cursor.fetchall()))
        return tables
    finally:
        conn.close()


def _marker(timeline: Timeline, started: float, progress: Progress) -> Callable[[str], None]:
    def mark(what: str) -> None:
        timeline.add(time.monotonic() - started, what)
        progress(what)
    return mark


def _rpo(replica: ContinuityRecord | None, wall_start: datetime, fault_at: float | None,
         started: float) -> float | None:
    """Age of the restored data when the fault hit (or when the failover started)."""
    if replica is None or not replica.detail.get("captured_at"):
        return None
    fault_wall = wall_start.timestamp() - (started - fault_at if fault_at else 0.0)
    captured = datetime.fromisoformat(replica.detail["captured_at"]).timestamp()
    return round(max(0.0, fault_wall - captured), 3)


def rounded(value: float | None) -> float | None:
    """Seconds to the millisecond, as reports show them (None stays None)."""
    return None if value is None else round(value, 3)
