"""Snapshots: capture every item on every target before a change, and restore them."""

from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.adapters.ansible import (
    EventCallback,
    PlaybookResult,
    PlaybookRun,
    failure_summary,
    run_playbook,
)
from controller.agent import snapshot_agent
from controller.engine.children import JournalChildren
from controller.engine.environment import Environment
from controller.errors import RelctlError
from controller.journal import Journal
from controller.paths import bundled_playbook
from controller.planning.release import ReleasePlan, version_from_link


class SnapshotError(RelctlError):
    """A snapshot could not be taken or does not match its checksums: nothing changed."""


@dataclass(frozen=True)
class Snapshots:
    """Capture and restore of one release's snapshot, kept under the controller's store."""

    env: Environment
    journal: Journal
    release_id: int
    plan: ReleasePlan

    @property
    def store(self) -> Path:
        return self.env.snapshot_dir(self.release_id)

    def take(self, hosts: list[str], on_event: EventCallback | None = None) -> None:
        """Capture every item on ``hosts``, fetch, verify checksums, record in the journal."""
        result = self._run("relctl_snapshot.yml", hosts, "snapshot", on_event)
        if not result.succeeded:
            raise SnapshotError(f"snapshot failed: {failure_summary(result)}",
                                hint="no host was changed")
        for host in hosts:
            for name, meta in self._unpack(host).items():
                self._record(host, name, meta)
            self.journal.set_host_state(self.release_id, host, "snapshotted",
                                        version_before=self.previous_version(host))

    def restore(self, hosts: list[str], on_event: EventCallback | None = None) -> PlaybookResult:
        """Put every item on ``hosts`` back as snapshotted; the agent verifies afterwards."""
        return self._run("relctl_restore.yml", hosts, "restore", on_event)

    def index(self, host: str) -> dict[str, Any]:
        """The agent's index of ``host``'s snapshot."""
        data: dict[str, Any] = json.loads((self.store / host / "bundle" / "index.json")
                                          .read_text())
        return data

    def previous_version(self, host: str) -> str | None:
        """The release an artifact's ``current`` link named when the snapshot was taken."""
        for meta in self.index(host).values():
            if meta.get("kind") == "artifact":
                return version_from_link(meta.get("current"))
        return None

    def _run(self, playbook: str, hosts: list[str], label: str,
             on_event: EventCallback | None) -> PlaybookResult:
        run = PlaybookRun(
            playbook=bundled_playbook(playbook), inventory=self.env.inventory,
            ansible_cfg=self.env.ansible_cfg, runs_dir=self.env.runs_dir,
            limit=",".join(hosts), label=f"r{self.release_id}-{label}",
            extravars={"relctl_hosts": "all", "relctl_agent": snapshot_agent.__file__,
                       "relctl_items_b64": self.plan.agent_items_b64,
                       "relctl_store": str(self.store), "relctl_release": self.release_id},
            children=JournalChildren(self.journal, self.release_id, self.env.children_dir),
        )
        return run_playbook(run, on_event)

    def _unpack(self, host: str) -> dict[str, Any]:
        return unpack_bundle(self.store / host, host)

    def _record(self, host: str, name: str, meta: dict[str, Any]) -> None:
        payload = meta.get("payload")
        path = self.store / host / "bundle" / payload if payload else self.store / host
        self.journal.add_snapshot(
            self.release_id, host=host, item=name, kind=meta["kind"], path=path,
            sha256=meta.get("sha256", ""), size_bytes=int(meta.get("bytes", 0)),
            meta={k: v for k, v in meta.items() if k not in ("sha256", "bytes")},
            verified=True,
        )



def unpack_bundle(folder: Path, host: str) -> dict[str, Any]:
    """Extract ``folder/bundle.tar`` fetched from ``host``; check every payload's sha256."""
    with tarfile.open(folder / "bundle.tar") as tar:
        tar.extractall(folder, filter="data")
    index: dict[str, Any] = json.loads((folder / "bundle" / "index.json").read_text())
    for name, meta in index.items():
        payload = meta.get("payload")
        digest = snapshot_agent.sha256_file(folder / "bundle" / payload) if payload else None
        if payload and digest != meta["sha256"]:
            raise SnapshotError(f"the copy of {name} fetched from {host} fails its sha256",
                                hint="no host was changed")
    return index
