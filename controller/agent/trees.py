"""Items into the host's store and back: the store itself (``Store``: content-addressed
objects in a folder only root reads), the capture of each kind of item, and a
snapshot's entries and trees checked before anything is written, then rebuilt through
confined paths (``confined.py``).

Runs on the host after ``snapshot_agent.py`` and before ``host_store.py``, in the same
namespace (``controller/adapters/host_agent.py``). Stdlib only. A tree is captured as its
member list ``[name, type, mode, uid, gid, mtime, object or link target]``; a member list
read back (from the host's store, or sent by a controller whose journal others can
write) names nothing outside its tree, or the whole restore of the item is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __name__ != "relctl_agent":  # on a host, the sources before ran first, in one namespace
    from controller.agent.confined import (
        RefusedError,
        descend,
        fifo_maker,
        file_maker,
        file_type,
        link_maker,
        open_regular,
        remove_at,
    )
    from controller.agent.protocol import (
        Entry,
        ItemSpec,
    )
    from controller.agent.snapshot_agent import (
        backup_database,
        item_path,
        node_digest,
        package_version,
        service_running,
        sha256_file,
        sqlite_digest,
        tree_digest,
        tree_entries,
    )


class Store:
    """The host's copy: a folder only root reads (0700)."""

    def __init__(self, root: str, scope: str) -> None:
        self.root = Path(root) / "snapshots" / scope
        self.objects = self.root / "objects"
        self.objects.mkdir(parents=True, exist_ok=True)
        for folder in (Path(root), self.root.parent, self.root, self.objects):
            os.chmod(folder, 0o700)

    def path(self, sha: str) -> Path:
        if not is_sha(sha):
            raise RefusedError(f"{str(sha)[:80]!r} names no snapshot object")
        return self.objects / sha

    def add_file(self, source: Path) -> str:
        """Copy the regular file ``source`` in under its sha256 (once), read once through
        an fd of the file itself (``open_regular``: no link followed, no FIFO waited on)."""
        partial = self.objects / f".{secrets.token_hex(12)}.partial"
        digest = hashlib.sha256()
        with os.fdopen(open_regular(source), "rb") as src, partial.open("xb") as out:
            for block in iter(lambda: src.read(1 << 20), b""):
                digest.update(block)
                out.write(block)
        sha = digest.hexdigest()
        if self.intact(sha):
            partial.unlink()
        else:
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


def is_sha(name: Any) -> bool:
    return isinstance(name, str) and len(name) == 64 and all(
        c in "0123456789abcdef" for c in name)


def tree_manifest(root: Path, store: Store) -> tuple[list[list[Any]], int]:
    """Every member of ``root``: [path, type, mode, uid, gid, mtime, object or target]
    (files keep their mtime; folders, links and FIFOs do not). A socket or a device is
    refused: it cannot be put back as what it is."""
    members, size = [], 0
    for path in tree_entries(root):
        st = path.lstat()
        rel, owner = os.path.relpath(path, root), [st.st_mode, st.st_uid, st.st_gid]
        if stat.S_ISLNK(st.st_mode):
            members.append([rel, "link", *owner, 0, os.readlink(path)])
        elif stat.S_ISREG(st.st_mode):
            members.append([rel, "file", *owner, st.st_mtime, store.add_file(path)])
            size += st.st_size
        elif stat.S_ISFIFO(st.st_mode):
            members.append([rel, "fifo", *owner, 0, None])
        elif stat.S_ISDIR(st.st_mode):  # a folder's mtime differs on every host that
            # unpacked it: not kept, so the member list of one release tree is one object
            members.append([rel, "dir", *owner, 0, None])
        else:
            raise RefusedError(f"{path} is {file_type(st.st_mode)}: relctl captures files, "
                               "folders, links and FIFOs only")
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
        return capture_file(path, store)
    if kind == "directory":
        return capture_tree_at(path, store)
    if kind == "artifact":
        return capture_artifact(path, store)
    return capture_database(path, store)


def capture_file(path: Path, store: Store) -> Entry:
    """A file item as what it is: a regular file's bytes, a link (its target, never
    followed) or a FIFO (never opened); a socket or a device is refused."""
    st = path.lstat()
    entry: Entry = {"mode": st.st_mode, "uid": st.st_uid, "gid": st.st_gid, "bytes": 0}
    if stat.S_ISLNK(st.st_mode) or stat.S_ISFIFO(st.st_mode):
        kind = "link" if stat.S_ISLNK(st.st_mode) else "fifo"
        entry["type"], entry["digest"] = kind, node_digest(path, st)
        if kind == "link":
            entry["target"] = os.readlink(path)
        return entry
    if not stat.S_ISREG(st.st_mode):
        raise RefusedError(f"{path} is {file_type(st.st_mode)}: a file item must be a regular "
                           "file, a link or a FIFO")
    sha = store.add_file(path)
    entry["object"], entry["digest"], entry["bytes"] = sha, sha, st.st_size
    return entry


def capture_artifact(root: Path, store: Store) -> Entry:
    """The ``current`` link and the release it names (never the other releases), which
    must be inside ``root``: a link out of it is refused."""
    link = root / "current"
    if not link.is_symlink():
        return {"current": None}
    target = os.readlink(link)
    release = root / target
    release_parts(str(root), str(release), f"{link} -> {target}")
    real, top = os.path.realpath(release), os.path.realpath(root)
    if os.path.commonpath([real, top]) != top or real == top:
        raise RefusedError(f"{link} -> {target} leads outside the artifact root {root} "
                           f"(to {real})")
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


def release_parts(root: str, release: str, what: str) -> list[str]:
    """The names from an artifact's root down to its release folder: refused unless the
    release is strictly inside the root (no ``..`` out of it, no other absolute path)."""
    if "\0" in root or "\0" in release:
        raise RefusedError(f"{what}: a path holds a NUL byte")
    rel = os.path.relpath(os.path.normpath(release), os.path.normpath(root))
    parts = rel.split("/")
    if rel == "." or parts[0] == ".." or not os.path.isabs(root):
        raise RefusedError(f"{what} points outside the artifact root {root}")
    return parts


def release_intact(entry: Entry) -> bool:
    """The artifact's release directory is on disk with the snapshot's digest."""
    release = Path(entry["release"])
    return release.is_dir() and not release.is_symlink() and tree_digest(release) == entry[
        "digest"]


MEMBER_KINDS = ("dir", "file", "link", "fifo")


def tree_members(store: Store, sha: str, item: str) -> list[list[Any]]:
    """A tree's member list, every member checked (``check_member``): a journal row or an
    object no one should trust names nothing outside the tree."""
    try:
        members = json.loads(store.path(sha).read_text())
    except ValueError as error:
        raise RefusedError(f"{item}: the tree's member list is no JSON: {error}") from error
    if not isinstance(members, list):
        raise RefusedError(f"{item}: the tree's member list is no list")
    for member in members:
        check_member(member, item)
    if len(members) > 1 and any(m[0] == "." and m[1] != "dir" for m in members):
        raise RefusedError(f"{item}: the tree's root is no folder but has members")
    return members


def check_member(member: Any, item: str) -> None:
    """One member: a relative, normalised name inside the tree (no absolute path, no
    ``..``, no NUL), a known type, numbers where numbers go, an object name or target."""
    if not (isinstance(member, list) and len(member) == 7):
        raise RefusedError(f"{item}: a malformed tree member {str(member)[:80]}")
    rel, kind, mode, uid, gid, mtime, ref = member
    if not member_name_ok(rel):
        raise RefusedError(f"{item}: the tree member name {str(rel)[:200]!r} is not a "
                           "relative path inside the tree (absolute, '..', empty, NUL or "
                           "not normalised)")
    numbers = (mode, uid, gid, mtime)
    if kind not in MEMBER_KINDS or any(type(n) not in (int, float) for n in numbers) or (
            kind == "file" and not is_sha(ref)) or (
            kind == "link" and not (isinstance(ref, str) and ref and "\0" not in ref)):
        raise RefusedError(f"{item}: the tree member {rel!r} is malformed ({kind!r})")


def member_name_ok(rel: Any) -> bool:
    if not isinstance(rel, str) or not rel or "\0" in rel:
        return False
    return rel == "." or (not rel.startswith("/") and os.path.normpath(rel) == rel
                          and ".." not in rel.split("/"))


def check_entry(item: ItemSpec, entry: Entry, store: Store) -> None:
    """Refuse, before anything is written, an entry that would write outside its item."""
    if entry.get("absent"):
        return
    if entry.get("type") == "link" and not (
            isinstance(entry.get("target"), str) and entry["target"]
            and "\0" not in entry["target"]):
        raise RefusedError(f"the link target {entry.get('target')!r} is malformed")
    if item["kind"] == "directory":
        tree_members(store, entry["tree"], item["name"])
    if item["kind"] != "artifact" or entry.get("current") is None:
        return
    root, current = item["root"], str(entry["current"])
    release_parts(root, os.path.join(root, current), f"{root}/current -> {current}")
    if not entry.get("dangling"):
        release_parts(root, entry["release"], f"{root}/current -> {current}")
        if not release_intact(entry):  # an intact release is only switched back to
            tree_members(store, entry["tree"], item["name"])


def node_maker(store: Store, kind: str, mode: int, uid: int, gid: int, mtime: float | None,
               ref: Any) -> Callable[[int, str], None]:
    """What makes one node of a snapshot: a regular file (``ref`` its object), a link
    (``ref`` its target) or a FIFO."""
    if kind == "link":
        return link_maker(ref, uid, gid)
    if kind == "fifo":
        return fifo_maker(mode, uid, gid)
    return file_maker(store.path(ref), mode, uid, gid, mtime)


def rebuild_tree(store: Store, members: list[list[Any]], folder: int, name: str) -> None:
    """Replace ``name`` in ``folder`` with the tree its checked ``members`` describe:
    bytes, modes, owners, links, FIFOs; every name reached from ``folder`` without
    following a link, owners and modes of folders set last, on their fds."""
    remove_at(folder, name)
    dirs = []
    for rel, kind, mode, uid, gid, mtime, ref in members:
        names = [name, *([] if rel == "." else rel.split("/"))]
        at = descend(folder, names[:-1], create_mode=0o700)
        try:
            if kind == "dir":
                dirs.append((names, mode, uid, gid))
                with contextlib.suppress(FileExistsError):
                    os.mkdir(names[-1], 0o700, dir_fd=at)
            else:
                node_maker(store, kind, mode, uid, gid, mtime, ref)(at, names[-1])
        finally:
            os.close(at)
    for names, mode, uid, gid in reversed(dirs):
        at = descend(folder, names)
        try:
            os.fchown(at, uid, gid)
            os.fchmod(at, mode & 0o7777)
        finally:
            os.close(at)
