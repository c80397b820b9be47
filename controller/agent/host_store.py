"""relctl's host-side snapshot store: capture to, and restore from, a copy kept on the host.

Runs on the target after ``snapshot_agent.py`` and ``sqlite_carry.py`` in the same
namespace (the controller sends the agent's sources on stdin, then one JSON request:
``controller/adapters/host_agent.py``; ``commands.py`` serves it). Stdlib only.

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
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

if __name__ != "relctl_agent":  # on a host, the other sources ran first in this namespace
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
        backup_database,
        current_digest,
        item_path,
        package_version,
        remove,
        restore_package,
        service_running,
        set_service,
        sha256_file,
        sqlite_digest,
        tree_digest,
        tree_entries,
    )
    from controller.agent.sqlite_carry import carry_rows, live_schema_same, private_copy



class Store:
    """The host's copy: a folder only root reads (0700)."""

    def __init__(self, root: str, scope: str) -> None:
        self.root = Path(root) / "snapshots" / scope
        self.objects = self.root / "objects"
        self.objects.mkdir(parents=True, exist_ok=True)
        for folder in (Path(root), self.root.parent, self.root, self.objects):
            os.chmod(folder, 0o700)

    def path(self, sha: str) -> Path:
        return self.objects / sha

    def add_file(self, source: Path) -> str:
        """Copy ``source`` in under its sha256 (once); its sha256."""
        sha = sha256_file(source)
        if not self.intact(sha):
            partial = self.objects / f".{sha}.partial"
            shutil.copyfile(source, partial)
            os.replace(partial, self.path(sha))
        return sha

    def add_bytes(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        if not self.intact(sha):
            partial = self.objects / f".{sha}.partial"
            partial.write_bytes(data)
            os.replace(partial, self.path(sha))
        return sha

    def intact(self, sha: str) -> bool:
        path = self.path(sha)
        return path.is_file() and sha256_file(path) == sha

    def index_path(self, snapshot: str) -> Path:
        return self.root / f"{snapshot}.json"


# -- capture ---------------------------------------------------------------------------

def tree_manifest(root: Path, store: Store) -> tuple[list[list[Any]], int]:
    """Every member of ``root``: [path, type, mode, uid, gid, mtime, object or target]
    (files keep their mtime; folders and links do not)."""
    members, size = [], 0
    for path in tree_entries(root):
        st = path.lstat()
        rel = os.path.relpath(path, root)
        if path.is_symlink():
            members.append([rel, "link", st.st_mode, st.st_uid, st.st_gid, 0, os.readlink(path)])
        elif path.is_file():
            members.append([rel, "file", st.st_mode, st.st_uid, st.st_gid, st.st_mtime,
                            store.add_file(path)])
            size += st.st_size
        else:  # a folder's mtime differs on every host that unpacked it: not kept, so
            # the member list of one release tree is one object for all hosts
            members.append([rel, "dir", st.st_mode, st.st_uid, st.st_gid, 0, None])
    return members, size


def capture_tree_at(root: Path, store: Store) -> Entry:
    members, size = tree_manifest(root, store)
    manifest = store.add_bytes(json.dumps(members, sort_keys=True).encode())
    return {"tree": manifest, "digest": tree_digest(root), "bytes": size}


def capture_entry(item: ItemSpec, store: Store) -> Entry:
    kind = item["kind"]
    if kind == "package":
        return {"installed": package_version(item)}
    if kind == "service":
        return {"running": service_running(item)}
    path = item_path(item)
    if not (path.exists() or path.is_symlink()):
        return {"absent": True}
    if kind == "file":
        st = path.lstat()
        return {"object": store.add_file(path), "mode": st.st_mode, "uid": st.st_uid,
                "gid": st.st_gid, "bytes": st.st_size, "digest": sha256_file(path)}
    if kind == "directory":
        return capture_tree_at(path, store)
    if kind == "artifact":
        return capture_artifact(path, store)
    return capture_database(path, store)


def capture_artifact(root: Path, store: Store) -> Entry:
    """The ``current`` link and the release it names: never the other releases."""
    link = root / "current"
    if not link.is_symlink():
        return {"current": None}
    target = os.readlink(link)
    release = (root / target) if not os.path.isabs(target) else Path(target)
    if not release.is_dir():
        return {"current": target, "release": str(release), "dangling": True}
    return {"current": target, "release": str(release), **capture_tree_at(release, store)}


def capture_database(path: Path, store: Store) -> Entry:
    """A consistent copy through SQLite's online backup API, never a raw copy."""
    partial = store.objects / ".backup.partial"
    partial.unlink(missing_ok=True)
    backup_database(path, partial)
    st = path.stat()
    try:
        return {"object": store.add_file(partial), "mode": st.st_mode, "uid": st.st_uid,
                "gid": st.st_gid, "bytes": partial.stat().st_size,
                "digest": sqlite_digest(partial)}
    finally:
        partial.unlink(missing_ok=True)


def referenced(index: dict[str, Entry], store: Store) -> set[str]:
    """Every object an index needs, tree members included (as far as the host has them)."""
    shas: set[str] = set()
    for entry in index.values():
        if entry.get("object"):
            shas.add(entry["object"])
        if entry.get("tree"):
            shas.add(entry["tree"])
            if store.path(entry["tree"]).is_file():
                shas |= {m[6] for m in json.loads(store.path(entry["tree"]).read_text())
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
        entry = capture_entry(item, store)
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

def release_intact(entry: Entry) -> bool:
    """The artifact's release directory is on disk with the snapshot's digest."""
    release = Path(entry["release"])
    return release.is_dir() and not release.is_symlink() and tree_digest(release) == entry[
        "digest"]


def needed_objects(index: dict[str, Entry], store: Store) -> tuple[set[str], set[str]]:
    """The objects a restore reads, and which of them the host lacks or has damaged."""
    needed: set[str] = set()
    for entry in index.values():
        if entry.get("absent") or entry.get("dangling"):
            continue
        if entry.get("object"):
            needed.add(entry["object"])
        if entry.get("tree") and not (entry["kind"] == "artifact" and release_intact(entry)):
            needed.add(entry["tree"])
            if store.intact(entry["tree"]):
                needed |= {m[6] for m in json.loads(store.path(entry["tree"]).read_text())
                           if m[1] == "file"}
    return needed, {sha for sha in needed if not store.intact(sha)}


def put_file(store: Store, sha: str, dest: Path, mode: int, uid: int, gid: int) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f".{dest.name}.relctl-restore")
    shutil.copyfile(store.path(sha), partial)
    os.chown(partial, uid, gid)
    os.chmod(partial, mode & 0o7777)
    os.replace(partial, dest)


def rebuild_tree(store: Store, manifest: str, root: Path) -> None:
    """Replace ``root`` with the tree its manifest describes: bytes, modes, owners, links."""
    remove(root)
    members = json.loads(store.path(manifest).read_text())
    dirs = []
    for rel, kind, mode, uid, gid, mtime, ref in members:
        path = root if rel == "." else root / rel
        if kind == "dir":
            path.mkdir(parents=True, exist_ok=True)
            dirs.append((path, mode, uid, gid))
        elif kind == "link":
            path.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(ref, path)
            os.lchown(path, uid, gid)
        else:
            put_file(store, ref, path, mode, uid, gid)
            os.utime(path, (mtime, mtime))
    for path, mode, uid, gid in reversed(dirs):
        os.chown(path, uid, gid)
        os.chmod(path, mode & 0o7777)


def switch_link(link: Path, target: str) -> None:
    """Point ``link`` at ``target`` atomically (a new link renamed over the old one)."""
    partial = link.with_name(f".{link.name}.relctl-switch")
    partial.unlink(missing_ok=True)
    os.symlink(target, partial)
    os.replace(partial, link)


def restore_artifact(item: ItemSpec, entry: Entry, store: Store) -> str:
    link = Path(item["root"]) / "current"
    current = entry.get("current")
    if current is None:
        link.unlink(missing_ok=True)
        return "unlinked"
    how = "switched"
    if not entry.get("dangling") and not release_intact(entry):
        rebuild_tree(store, entry["tree"], Path(entry["release"]))
        how = "unpacked"
    Path(item["root"]).mkdir(parents=True, exist_ok=True)
    switch_link(link, current)
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
        rebuild_tree(store, entry["tree"], item_path(item))
    elif kind in ("file", "data"):
        if kind == "data":
            for suffix in ("-wal", "-shm", "-journal"):
                Path(f"{item['path']}{suffix}").unlink(missing_ok=True)
        put_file(store, entry["object"], item_path(item), entry["mode"], entry["uid"],
                 entry["gid"])
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
        os.chown(copy, entry["uid"], entry["gid"])
        os.chmod(copy, entry["mode"] & 0o7777)
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
    return bool(current_digest(item) == entry["digest"])


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
    _, missing = needed_objects(index, store)
    if bad or missing:
        return {"ok": False, "missing": sorted(missing | set(bad)),
                "error": f"{len(missing)} objects missing or damaged on the host"}
    items = request["items"]
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
    for service in services:
        set_service(service, running=bool(index[service["name"]]["running"]))
    down_s = time.monotonic() - stopped
    store.index_path(str(request["snapshot"])).write_text(json.dumps(index, sort_keys=True))
    mismatches = [item["name"] for item in items if not entry_matches(
        item, index[item["name"]], data.get(item["name"], {}).get("digest"))]
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
