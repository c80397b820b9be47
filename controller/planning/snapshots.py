"""Snapshots as data: which ones retention keeps, what each one references, and the
requests relctl's agent reads on a host.

A snapshot is an index per host: item name -> entry (written by the agent,
``controller/agent/host_store.py``). Payloads are objects named by their sha256, stored
once for every host and release: a file's bytes, an SQLite backup, each member of a tree,
and the tree's member list itself (``tree``: its members name their objects).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from controller.agent.protocol import (
    CaptureRequest,
    Entry,
    ItemSpec,
    RestoreRequest,
    ServicesRequest,
)

# Release states after which nothing can be rolled back by relctl any more.
CLOSED = ("rolled_back",)


@dataclass(frozen=True)
class Held:
    """A release of one service in one environment that holds a snapshot."""

    release_id: int
    state: str


def rollback_targets(held: Iterable[Held]) -> set[int]:
    """The releases a rollback can still restore: the newest one released (its snapshot is
    the state before it) and every later one that was not rolled back (in flight, killed,
    failed or whose rollback failed: ``resume`` and ``rollback`` need their snapshot).
    A release superseded by a later released one is no rollback target any more."""
    ordered = sorted(held, key=lambda h: h.release_id)
    released = [h.release_id for h in ordered if h.state == "released"]
    newest = released[-1] if released else 0
    return {h.release_id for h in ordered
            if h.release_id >= newest and h.state not in CLOSED}


def retained(held: Iterable[Held], keep: int) -> set[int]:
    """The releases whose snapshots retention keeps: the newest ``keep``, and every
    rollback target whatever its age."""
    ordered = sorted(held, key=lambda h: h.release_id)
    newest = {h.release_id for h in ordered[-keep:]} if keep > 0 else set()
    return newest | rollback_targets(ordered)


def entry_objects(entry: Entry, members: Callable[[str], list[list[Any]]]) -> set[str]:
    """Every object an index entry needs: its payload, its tree's member list and the
    members' contents (``members(sha)`` reads a member list)."""
    shas = {str(entry["object"])} if entry.get("object") else set()
    if entry.get("tree"):
        tree = str(entry["tree"])
        shas |= {tree, *(str(m[6]) for m in members(tree) if m[1] == "file")}
    return shas


def main_object(entry: Entry) -> str:
    """The object that stands for an entry in the journal (payload or tree), or ''."""
    return str(entry.get("object") or entry.get("tree") or "")


def scope_of(service: str, environment: str) -> str:
    """The host-side folder of one service's snapshots in one environment."""
    return f"{service}.{environment}"


def capture_request(items: list[ItemSpec], host_dir: str, scope: str, snapshot: int,
                    known: Iterable[str], keep: Iterable[int]) -> CaptureRequest:
    """What the agent reads to capture ``items`` into the host's copy."""
    return {"command": "capture", "items": items, "dir": host_dir, "scope": scope,
            "snapshot": snapshot, "known": sorted(known), "keep": sorted(keep)}


def restore_request(items: list[ItemSpec], host_dir: str, scope: str, snapshot: int,
                    index: Mapping[str, Entry],
                    objects: Mapping[str, str] | None = None) -> RestoreRequest:
    """What the agent reads to restore and verify ``index`` (``objects``: sha -> base64
    content, those the host lacked)."""
    return {"command": "restore", "items": items, "dir": host_dir, "scope": scope,
            "snapshot": snapshot, "index": dict(index), "objects": dict(objects or {})}


def services_request(items: list[ItemSpec], running: bool) -> ServicesRequest:
    """What the agent reads to stop (or start) the services among ``items``."""
    return {"command": "services", "items": items, "running": running}
