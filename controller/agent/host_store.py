"""relctl's host-side snapshot store: capture to, and restore from, a copy kept on the host.

Runs on the target after ``confined.py``, ``snapshot_agent.py``, ``trees.py`` and
``sqlite_carry.py`` in the same namespace (the controller sends the agent's sources on
stdin, then one JSON request: ``controller/adapters/host_agent.py``; ``commands.py``
serves it). Stdlib only.

    HOST_DIR/snapshots/SCOPE/objects/<sha256>   every payload, once (content-addressed)
    HOST_DIR/snapshots/SCOPE/<snapshot>.json    the index of one snapshot
    (SCOPE: service.environment; every folder 0700)

capture  every item's payloads into the objects (files, tree members, SQLite backups,
         each tree's member list), the index written, snapshots not in ``keep`` dropped;
         the reply carries the index and the objects the controller lacks (``known``).
restore  the objects it needs are checked against their sha256 first; any missing or
         wrong: nothing is touched and the reply names them (the controller uploads
         them and asks again). Then services stop, items are put back (an artifact whose
         release directory still has the snapshot's digest only gets its link switched
         back), services return to their state, and the host is verified in the same run.
         Every member name and release path is checked inside its item before anything
         is written; writes go through folder fds, never through a link
         (``confined.py``).
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import time
from pathlib import Path

if __name__ != "relctl_agent":  # on a host, the sources before ran first, in one namespace
    from controller.agent.confined import (
        RefusedError,
        descend,
        in_folder,
        link_maker,
        open_folder,
        place_at,
        remove_link,
        set_owner,
    )
    from controller.agent.protocol import (
        CaptureReply,
        CaptureRequest,
        DataReport,
        Entry,
        ItemSpec,
        RestoreReply,
        RestoreRequest,
        ServicesReply,
        ServicesRequest,
        VerifyReply,
        VerifyRequest,
    )
    from controller.agent.snapshot_agent import (
        PATH_KINDS,
        current_digest,
        item_path,
        node_digest,
        package_version,
        remove,
        restore_package,
        service_running,
        set_service,
        sqlite_digest,
    )
    from controller.agent.sqlite_carry import (
        carry_rows,
        live_schema_same,
        private_copy,
    )
    from controller.agent.trees import (
        Store,
        capture_entry,
        check_entry,
        node_maker,
        rebuild_tree,
        release_intact,
        release_parts,
        tree_members,
    )


# -- capture ---------------------------------------------------------------------------


def referenced(index: dict[str, Entry], store: Store) -> set[str]:
    """Every object an index needs, tree members included (as far as the host has them)."""
    shas: set[str] = set()
    for name, entry in index.items():
        if entry.get("object"):
            shas.add(entry["object"])
        if entry.get("tree"):
            shas.add(entry["tree"])
            if store.path(entry["tree"]).is_file():
                shas |= {m[6] for m in tree_members(store, entry["tree"], name)
                         if m[1] == "file"}
    return shas


def prune(store: Store, keep: set[str]) -> None:
    """Drop the snapshots not in ``keep`` and every object no kept snapshot needs."""
    needed: set[str] = set()
    for index_file in store.root.glob("*.json"):
        if index_file.stem not in keep:
            index_file.unlink()
            continue
        needed |= referenced(json.loads(index_file.read_text()), store)
    for obj in store.objects.iterdir():
        if obj.name not in needed:
            obj.unlink()


def capture(request: CaptureRequest) -> CaptureReply:
    store = Store(request["dir"], request["scope"])
    index: dict[str, Entry] = {}
    for item in request["items"]:
        try:
            entry = capture_entry(item, store)
        except RefusedError as error:  # bad input: the controller's exit 2, no index written
            return {"ok": False, "refused": True, "error": f"item {item['name']}: {error}"}
        entry["kind"] = item["kind"]
        index[item["name"]] = entry
    snapshot = str(request["snapshot"])
    store.index_path(snapshot).write_text(json.dumps(index, sort_keys=True))
    prune(store, {*map(str, request.get("keep", [])), snapshot})
    known = set(request.get("known", []))
    wanted = sorted(referenced(index, store) - known)
    return {"ok": True, "index": index,
            "objects": {sha: base64.b64encode(store.path(sha).read_bytes()).decode()
                        for sha in wanted}}


# -- restore ---------------------------------------------------------------------------


def needed_objects(index: dict[str, Entry], store: Store) -> tuple[set[str], set[str]]:
    """The objects a restore reads, and which of them the host lacks or has damaged."""
    needed: set[str] = set()
    for name, entry in index.items():
        if entry.get("absent") or entry.get("dangling"):
            continue
        if entry.get("object"):
            needed.add(entry["object"])
        if entry.get("tree") and not (entry["kind"] == "artifact" and release_intact(entry)):
            needed.add(entry["tree"])
            if store.intact(entry["tree"]):
                needed |= {m[6] for m in tree_members(store, entry["tree"], name)
                           if m[1] == "file"}
    return needed, {sha for sha in needed if not store.intact(sha)}


def restore_artifact(item: ItemSpec, entry: Entry, store: Store) -> str:
    """Switch ``current`` back (a new link renamed over it), the release folder rebuilt
    first when it is not there as snapshotted."""
    root = item["root"]
    current = entry.get("current")
    if current is None:
        remove_link(root, "current")
        return "unlinked"
    how = "switched"
    top = open_folder(root, create=True)
    try:
        if not entry.get("dangling") and not release_intact(entry):
            parts = release_parts(root, entry["release"], f"{root}/current -> {current}")
            folder = descend(top, parts[:-1], create_mode=0o755)
            try:
                rebuild_tree(store, tree_members(store, entry["tree"], item["name"]),
                             folder, parts[-1])
            finally:
                os.close(folder)
            how = "unpacked"
        place_at(top, "current", link_maker(current))
    finally:
        os.close(top)
    return how


def restore_entry(item: ItemSpec, entry: Entry, store: Store) -> str:
    kind = item["kind"]
    if entry.get("absent"):
        if kind in PATH_KINDS:
            remove(item_path(item))
        return "removed"
    if kind == "artifact":
        return restore_artifact(item, entry, store)
    if kind == "directory":
        members = tree_members(store, entry["tree"], item["name"])
        in_folder(item_path(item), lambda fd, name: rebuild_tree(store, members, fd, name))
    elif kind in ("file", "data"):
        if kind == "data":
            for suffix in ("-wal", "-shm", "-journal"):
                Path(f"{item['path']}{suffix}").unlink(missing_ok=True)
        make = node_maker(store, entry.get("type") or "file", entry["mode"], entry["uid"],
                          entry["gid"], None, entry.get("target") or entry.get("object"))
        in_folder(item_path(item), lambda fd, name: place_at(fd, name, make))
    elif kind == "package":
        restore_package(item, entry)
    return "restored"


def restore_database(item: ItemSpec, entry: Entry, store: Store) -> tuple[str, DataReport]:
    """Roll an SQLite database back without losing a write (``sqlite_carry``): how it
    came back, and what happened to the rows written since the snapshot (with the
    logical digest the host must now show)."""
    live = Path(item["path"])
    policy = item.get("on_rollback") or "auto"
    if not live.exists():
        restore_entry(item, entry, store)
        return "restored", {"decision": "restored", "why": "the live database was gone",
                            "digest": entry["digest"]}
    checkpoint(live)
    now = sqlite_digest(live)
    if now == entry["digest"]:
        return "unchanged", {"decision": "unchanged", "digest": now,
                             "why": "nothing was written since the snapshot: the file is "
                                    "left as it was, byte for byte"}
    if policy == "keep":
        return "kept", {"decision": "kept", "why": "on_rollback: keep", "digest": now}
    snapshot = store.path(entry["object"])
    same_schema = live_schema_same(live, snapshot)
    if policy == "auto" and same_schema:
        return "kept", {"decision": "kept", "digest": now,
                        "why": "the schema is the snapshot's: no migration ran, the data "
                               "stays live"}
    copy = private_copy(snapshot, live.parent)
    try:  # the manifest's rollback_rows read the new schema: only when one is there
        rows = carry_rows(live, copy, discard=policy == "discard",
                          queries=None if same_schema else item.get("rollback_rows"))
        set_owner(copy, entry["uid"], entry["gid"], entry["mode"])
        digest = sqlite_digest(copy)
        os.replace(copy, live)
    finally:
        copy.unlink(missing_ok=True)
    for suffix in ("-wal", "-shm", "-journal"):  # the old file's, emptied by checkpoint()
        Path(f"{live}{suffix}").unlink(missing_ok=True)
    decision = "discarded" if policy == "discard" else "carried"
    why = ("on_rollback: discard: the rows written since are dropped (listed)"
           if policy == "discard" else
           "the schema changed since the snapshot: the snapshot is restored and every row "
           "written since carried into it")
    return decision, {"decision": decision, "why": why, "digest": digest, **rows}


def checkpoint(path: Path) -> None:
    """Move everything in ``path``'s write-ahead log into the file and empty the log, so
    the log left beside it after the file is replaced holds nothing to replay."""
    conn = sqlite3.connect(str(path), timeout=30)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def entry_matches(item: ItemSpec, entry: Entry, digest: str | None = None) -> bool:
    """The host's state of ``item`` is what ``entry`` recorded (``digest``: the logical
    digest a data rollback left instead of the snapshot's)."""
    kind = item["kind"]
    if digest is not None:
        return bool(current_digest(item) == digest)
    if kind == "package":
        return bool(package_version(item) == entry["installed"])
    if kind == "service":
        return bool(service_running(item) == entry["running"])
    if kind == "artifact" and not entry.get("absent"):
        link = Path(item["root"]) / "current"
        target = os.readlink(link) if link.is_symlink() else None
        if target != entry.get("current"):
            return False
        return target is None or bool(entry.get("dangling")) or release_intact(entry)
    if entry.get("absent"):
        return current_digest(item) is None
    if kind == "file":
        return file_matches(item_path(item), entry)
    return bool(current_digest(item) == entry["digest"])


def file_matches(path: Path, entry: Entry) -> bool:
    """A file item is what was captured: its type, mode, owner, and its bytes or its
    link's target (a link is never followed, a FIFO never opened)."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return False
    if (st.st_mode, st.st_uid, st.st_gid) != (entry["mode"], entry["uid"], entry["gid"]):
        return False
    return node_digest(path, st) == entry["digest"]


def receive(store: Store, objects: dict[str, str]) -> list[str]:
    """Store uploaded objects; the names of those that fail their sha256."""
    bad = []
    for sha, data in objects.items():
        if store.add_bytes(base64.b64decode(data)) != sha:
            bad.append(sha)
    return bad


def restore(request: RestoreRequest) -> RestoreReply:
    store = Store(request["dir"], request["scope"])
    index: dict[str, Entry] = request["index"]
    bad = receive(store, request.get("objects", {}))
    items = request["items"]
    try:  # every name checked before anything is written: a bad one restores nothing
        _, missing = needed_objects(index, store)
        if not (bad or missing):
            for item in items:
                check_entry(item, index[item["name"]], store)
    except RefusedError as error:
        return {"ok": False, "error": f"nothing restored: {error}"}
    if bad or missing:
        return {"ok": False, "missing": sorted(missing | set(bad)),
                "error": f"{len(missing)} objects missing or damaged on the host"}
    services = [i for i in items if i["kind"] == "service"]
    for service in services:
        set_service(service, running=False)
    stopped = time.monotonic()
    how: dict[str, str] = {}
    data: dict[str, DataReport] = {}
    for item in items:
        entry = index[item["name"]]
        if item["kind"] == "data" and not entry.get("absent"):
            how[item["name"]], data[item["name"]] = restore_database(item, entry, store)
        elif item["kind"] != "service":
            how[item["name"]] = restore_entry(item, entry, store)
    # Checked before the services start again: a write they take at once would make a
    # restored database differ from what was restored, and fail a good restore.
    mismatches = [item["name"] for item in items if item["kind"] != "service"
                  and not entry_matches(item, index[item["name"]],
                                        data.get(item["name"], {}).get("digest"))]
    for service in services:
        set_service(service, running=bool(index[service["name"]]["running"]))
    down_s = time.monotonic() - stopped
    store.index_path(str(request["snapshot"])).write_text(json.dumps(index, sort_keys=True))
    mismatches += [s["name"] for s in services if not entry_matches(s, index[s["name"]])]
    return {"ok": not mismatches, "restored": how, "mismatches": mismatches, "data": data,
            "services_down_s": round(down_s, 3) if services else None,
            **({"error": f"the host does not match the snapshot: {mismatches}"}
               if mismatches else {})}


def services(request: ServicesRequest) -> ServicesReply:
    """Stop (or start) every service item: a rollback whose data lives on a server of its
    own stops the code first, restores the data, then the host (``restore``), which starts
    the code again; when the data cannot come back, the code is started as it was."""
    running = bool(request["running"])
    found = [i for i in request["items"] if i["kind"] == "service"]
    for service in found:
        set_service(service, running=running)
    return {"ok": True, "services": [s["name"] for s in found], "running": running}


def verify(request: VerifyRequest) -> VerifyReply:
    index: dict[str, Entry] = request["index"]
    mismatches = [i["name"] for i in request["items"] if not entry_matches(i, index[i["name"]])]
    return {"ok": not mismatches, "mismatches": mismatches}
