"""Snapshots: capture every item on every target before a change, and restore them.

One agent run per host for a capture, one for a restore with its verification, every
host at once (``adapters/agent_transport.py``). Each host keeps its own copy (the
manifest's ``snapshots.host_dir``, 0700); the controller keeps every payload once, by
sha256, in ``STATE_DIR/snapshots/objects`` (``adapters/snapshot_store.py``), and the
journal keeps each host's index. A restore uses the host's copy and uploads only the
objects it lacks or has damaged; retention (``planning/snapshots.py``) keeps the newest
``snapshots.keep`` releases and every snapshot a release can still be rolled back to.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import cast

from controller.adapters.agent_transport import AgentReply, AgentTransport
from controller.adapters.ansible import EventCallback
from controller.adapters.host_agent import AgentProgram, HostAgent
from controller.adapters.snapshot_store import ObjectMismatchError, ObjectStore
from controller.agent.protocol import (
    CaptureReply,
    DataReport,
    Entry,
    RestoreReply,
    RestoreRequest,
    StopSessionsRequest,
)
from controller.engine.children import JournalChildren
from controller.engine.environment import Environment
from controller.engine.server_data import ServerData
from controller.errors import InputError, RelctlError
from controller.journal import Journal
from controller.planning.release import ReleasePlan, version_from_link
from controller.planning.snapshots import (
    Held,
    capture_request,
    entry_objects,
    main_object,
    restore_request,
    retained,
    scope_of,
    services_request,
)

Index = dict[str, Entry]
# The age of a cancelled playbook's processes is measured on the controller and compared
# on the host with its own clock: the request's transit is the only skew.
SESSION_AGE_MARGIN_S = 2.0


class SnapshotError(RelctlError):
    """A snapshot could not be taken or does not match its checksums: nothing changed."""


class SnapshotRefusedError(InputError, SnapshotError):
    """An item cannot be captured as it is (an artifact's ``current`` link out of its
    root, a socket or a device): bad input, exit 2, nothing changed."""


@dataclass
class RestoreResult:
    """What a restore did on each host: its agent's reply, and the objects uploaded."""

    replies: dict[str, AgentReply[RestoreReply]]
    uploaded: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    databases: dict[str, str] = field(default_factory=dict)  # server-side item -> how
    database_error: str | None = None  # a database did not restore: the hosts kept their files

    @property
    def succeeded(self) -> bool:
        return self.database_error is None and all(r.ok for r in self.replies.values())

    @property
    def failed_hosts(self) -> list[str]:
        return sorted(h for h, reply in self.replies.items() if not reply.ok)

    def summary(self) -> str:
        """The failed hosts' errors, for people."""
        if self.database_error:
            return self.database_error[:1500]
        return "; ".join(f"{h}: {self.replies[h].error}" for h in self.failed_hosts)[:1500]

    def data(self) -> dict[str, dict[str, DataReport]]:
        """What each host's agent did with its data items (kept, carried, ...)."""
        return {h: r.data.get("data") or {} for h, r in self.replies.items()
                if r.data.get("data")}

    def writes_refused(self) -> dict[str, float | None]:
        """Seconds each host's services were stopped during the restore."""
        return {h: r.data.get("services_down_s") for h, r in self.replies.items()}

    def how(self, host: str) -> dict[str, str]:
        """How each item came back on ``host`` (switched, unpacked, restored, removed)."""
        return self.replies[host].data.get("restored", {})


@dataclass(frozen=True)
class Snapshots:
    """Capture and restore of one release's snapshot."""

    env: Environment
    journal: Journal
    release_id: int
    plan: ReleasePlan
    transport: AgentTransport | None = None  # None: ssh where it can, else Ansible

    @property
    def store(self) -> ObjectStore:
        return ObjectStore(self.env.state_dir / "snapshots" / "objects")

    def take(self, hosts: list[str], on_event: EventCallback | None = None) -> None:
        """Capture every item on ``hosts`` (one agent run each, all at once), store the
        objects the controller lacked, check every sha256, record in the journal, then
        apply retention."""
        keep = self.retained_releases()
        known = self.store.names()
        request = capture_request(self.plan.agent_items, self._host_dir, self._scope,
                                  self.release_id, known, keep)
        replies = self._agent.capture(f"r{self.release_id}-snapshot",
                                      dict.fromkeys(hosts, request))
        failed = {h: r.error for h, r in replies.items() if not r.ok}
        refused = {h: r.error for h, r in replies.items() if r.data.get("refused")}
        if refused:
            raise SnapshotRefusedError(f"snapshot refused: {_join(refused)}",
                                       hint="nothing was changed: fix the item on the host "
                                            "or in the manifest")
        if failed:
            raise SnapshotError(f"snapshot failed: {_join(failed)}", hint="no host was changed")
        for host in hosts:
            self._record(host, self._keep_objects(host, replies[host].data))
        self.server_data.take()
        self.apply_retention()

    def restore(self, hosts: list[str], on_event: EventCallback | None = None) -> RestoreResult:
        """Put every item on ``hosts`` back as snapshotted and verify it, in one agent run
        per host; a host whose copy lacks objects gets them uploaded and runs once more."""
        started = time.monotonic()
        indexes = {host: self.index(host) for host in hosts}
        label = f"r{self.release_id}-restore"
        databases: dict[str, str] = {}
        if self.plan.server_data:  # code stopped, data back, then the hosts as snapshotted
            stopped = self._services(hosts, f"{label}-stop", running=False)
            if not all(reply.ok for reply in stopped.values()):
                return RestoreResult(stopped, seconds=time.monotonic() - started)
            try:
                databases = self.server_data.restore()
            except RelctlError as error:
                restarted = self._services(hosts, f"{label}-restart", running=True)
                again = ("the release runs again on its untouched data" if
                         all(r.ok for r in restarted.values()) else
                         "the release could not be started again: it is stopped")
                return RestoreResult(restarted, seconds=time.monotonic() - started,
                                     database_error=f"{error.message}; {again}")
        replies = self._agent.restore(label, {h: self._restore(indexes[h]) for h in hosts})
        uploads: dict[str, dict[str, str]] = {}
        for host, reply in list(replies.items()):
            if reply.data.get("missing"):
                try:
                    uploads[host] = self._upload(indexes[host], reply.data["missing"])
                except SnapshotError as error:
                    replies[host] = AgentReply(host, False, reply.data, error.message)
        if uploads:
            replies |= self._agent.restore(f"{label}-upload", {
                h: self._restore(indexes[h], objects) for h, objects in uploads.items()})
        return RestoreResult(replies, {h: len(o) for h, o in uploads.items()},
                             time.monotonic() - started, databases)

    def stop_sessions(self, hosts: list[str], connections: list[str],
                      seconds: float) -> dict[str, list[str]]:
        """Stop, on each host, the processes of the ssh ``connections`` started in the last
        ``seconds`` (what a cancelled playbook left); per host, one line per process (or
        the error: a host that could not be asked is restored all the same)."""
        request = StopSessionsRequest(command="stop_sessions", connections=connections,
                                      max_age_s=seconds + SESSION_AGE_MARGIN_S)
        replies = self._agent.stop_sessions(f"r{self.release_id}-stop-leftovers",
                                            dict.fromkeys(hosts, request))
        stopped: dict[str, list[str]] = {}
        for host, reply in replies.items():
            lines = [f"{p['pid']} {p['command']}" for p in reply.data.get("stopped", [])]
            if not reply.ok:
                lines.append(f"NOT STOPPED: {reply.error}")
            stopped[host] = lines
        return stopped

    def index(self, host: str) -> Index:
        """``host``'s snapshot as the journal holds it: item name -> the agent's entry."""
        rows = self.journal.snapshots(self.release_id, host)
        if any(row.pruned for row in rows):
            raise SnapshotError(f"the snapshot of {host} in release {self.release_id} was "
                                "dropped by retention", hint="nothing was changed")
        if rows and any("payload" in row.meta for row in rows):
            raise SnapshotError(f"the snapshot of {host} was taken by an older relctl: "
                                f"restore it by hand from {self.env.snapshot_dir(self.release_id)}")
        return {row.item: cast(Entry, dict(row.meta)) for row in rows}

    def previous_version(self, host: str) -> str | None:
        """The release an artifact's ``current`` link named when the snapshot was taken."""
        return linked_version(self.index(host))

    def retained_releases(self) -> set[int]:
        """The releases of this service and environment whose snapshots retention keeps
        (this one included)."""
        m = self.plan.manifest
        held = [Held(r.id, str(r.state)) for r in self.journal.snapshot_releases(
            m.service, m.environment) if r.id != self.release_id]
        return retained([*held, Held(self.release_id, "snapshotting")], m.snapshots.keep)

    def apply_retention(self) -> None:
        """Drop the snapshots retention does not keep, and the objects no kept one needs."""
        keep = self.retained_releases()
        m = self.plan.manifest
        for record in self.journal.snapshot_releases(m.service, m.environment):
            if record.id not in keep:
                self.journal.prune_snapshots(record.id)
                shutil.rmtree(self.env.snapshot_dir(record.id), ignore_errors=True)
        needed: set[str] = set()
        for row in self.journal.live_snapshots():
            entry = cast(Entry, row.meta)  # the journal keeps the agent's entries as given
            if main_object(entry) and self.store.has(main_object(entry)):
                needed |= entry_objects(entry, self.store.members)
        self.store.drop_except(needed)

    @property
    def server_data(self) -> ServerData:
        """The data items on their own servers (PostgreSQL), snapshotted by the controller."""
        return ServerData(self.journal, self.release_id, self.plan.server_data, self.store,
                          self.env.state_dir / "snapshots" / "scratch")

    # -- helpers -------------------------------------------------------------------------

    @property
    def _host_dir(self) -> str:
        return self.plan.manifest.snapshots.host_dir

    @property
    def _scope(self) -> str:
        return scope_of(self.plan.manifest.service, self.plan.manifest.environment)

    @cached_property
    def _agent(self) -> HostAgent:
        if self.transport is not None:
            return HostAgent(self.transport, AgentProgram.load())
        return HostAgent.reaching(self.env.inventory, self.env.ansible_cfg, self.plan.hosts,
                                  self.env.runs_dir, self.env.connections_dir,
                                  JournalChildren(self.journal, self.release_id,
                                                  self.env.children_dir))

    def _keep_objects(self, host: str, reply: CaptureReply) -> Index:
        """Store the objects ``host`` sent; check the store now holds every one its index
        needs, each matching its sha256."""
        try:
            self.store.put_b64(reply.get("objects", {}))
        except (ObjectMismatchError, ValueError) as error:
            raise SnapshotError(f"a payload fetched from {host} fails its sha256: {error}",
                                hint="no host was changed") from error
        index: Index = reply.get("index", {})
        for name, entry in index.items():
            if self.store.claim(entry_objects(entry, self.store.members)):
                raise SnapshotError(f"the snapshot of {name} on {host} is incomplete",
                                    hint="no host was changed")
        return index

    def _record(self, host: str, index: Index) -> None:
        for name, entry in index.items():
            main = main_object(entry)
            self.journal.add_snapshot(
                self.release_id, host=host, item=name, kind=entry["kind"],
                path=self.store.path(main) if main else self.store.root, sha256=main,
                size_bytes=int(entry.get("bytes", 0)), meta=entry, verified=True)
        self.journal.set_host_state(self.release_id, host, "snapshotted",
                                    version_before=linked_version(index))

    def _services(self, hosts: list[str], label: str, *, running: bool
                  ) -> dict[str, AgentReply[RestoreReply]]:
        """Stop (or start) the service items on ``hosts``; as restore replies (nothing
        restored), which is what a restore that stopped there reports."""
        replies = self._agent.services(label, dict.fromkeys(
            hosts, services_request(self.plan.agent_items, running)))
        return {h: AgentReply(h, r.ok, RestoreReply(ok=r.ok, error=r.error), r.error)
                for h, r in replies.items()}

    def _restore(self, index: Index, objects: Mapping[str, str] | None = None
                 ) -> RestoreRequest:
        return restore_request(self.plan.agent_items, self._host_dir, self._scope,
                               self.release_id, index, objects)

    def _upload(self, index: Index, missing: list[str]) -> dict[str, str]:
        """The objects to send a host that lacks ``missing``: with a tree's member list,
        its members too (the host could not read which it needs)."""
        wanted = set(missing)
        for entry in index.values():
            if entry.get("tree") in wanted:
                wanted |= entry_objects(entry, self.store.members)
        damaged = sorted(sha for sha in wanted if not self.store.intact(sha))
        if damaged:
            raise SnapshotError(f"the controller's copy of {len(damaged)} snapshot objects "
                                f"is missing or damaged ({damaged[0][:12]}...)",
                                hint="nothing was changed on the host")
        return self.store.b64(wanted)


def _join(failures: Mapping[str, str]) -> str:
    return "; ".join(f"{host}: {error}" for host, error in sorted(failures.items()))[:1500]


def linked_version(index: Index) -> str | None:
    """The release the first artifact's ``current`` link named in a snapshot's index."""
    for entry in index.values():
        if entry.get("kind") == "artifact":
            return version_from_link(entry.get("current"))
    return None
