"""relctl's host agent: what it knows of configuration items on one host.

One of the agent's first sources, after ``protocol.py`` and ``confined.py`` (the
controller sends them all on stdin, ``controller/adapters/host_agent.py``;
``commands.py`` serves the request). Runs with the host's own Python (stdlib only,
``protocol.MIN_PYTHON`` and newer). Item kinds: file, directory, artifact, package,
service, data (sqlite).

Here: digests, read-only SQLite, packages and services, and the replication commands
(``copy_data``: consistent copies of the databases sent back; ``load_data``: copies
loaded into the live databases through SQLite's online backup API while the service
keeps running). Snapshots and rollback are ``host_store.py``'s.

Every path the agent writes is reached through ``confined.py`` (no link followed).
"""

from __future__ import annotations

import base64
import hashlib
import os
import sqlite3
import stat
import subprocess
import tempfile
import urllib.parse
from pathlib import Path

if __name__ != "relctl_agent":  # on a host, the sources before ran first, in one namespace
    from controller.agent.confined import (
        file_type,
        leaf_name,
        open_folder,
        open_regular,
        remove_at,
    )
    from controller.agent.protocol import (
        CopyDataReply,
        CopyDataRequest,
        Entry,
        ItemSpec,
        LoadDataReply,
        LoadDataRequest,
    )


PATH_KINDS = ("file", "directory", "artifact", "data")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_regular(path: Path | str) -> str:
    """``sha256_file`` of the file ``path`` names itself (``open_regular``)."""
    digest = hashlib.sha256()
    with os.fdopen(open_regular(path), "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def node_digest(path: Path | str, st: os.stat_result) -> str:
    """What a path holds, by type: a regular file's sha256; ``link:TARGET``; ``fifo``;
    ``dir``; ``special:...`` (a socket or device: never read)."""
    if stat.S_ISLNK(st.st_mode):
        return "link:" + os.readlink(path)
    if stat.S_ISREG(st.st_mode):
        return sha256_regular(path)
    if stat.S_ISFIFO(st.st_mode):
        return "fifo"
    return "dir" if stat.S_ISDIR(st.st_mode) else "special:" + file_type(st.st_mode)


def tree_entries(root: Path) -> list[Path]:
    """Every path under ``root`` in a stable order; symlinks are listed, not followed."""
    if root.is_symlink() or not root.is_dir():
        return [root]
    entries = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        base = Path(folder)
        entries.append(base)
        entries += [base / name for name in sorted(files)]
        entries += [base / name for name in dirs if (base / name).is_symlink()]
    return entries


def tree_digest(root: Path) -> str:
    """One sha256 over every entry's path, type, mode, owner and content or link target."""
    digest = hashlib.sha256()
    for path in tree_entries(root):
        st = path.lstat()
        body = node_digest(path, st)
        if stat.S_ISREG(st.st_mode):
            body = "file:" + body
        rel = os.path.relpath(path, root)
        digest.update(f"{rel}|{st.st_mode:o}|{st.st_uid}|{st.st_gid}|{body}\n".encode())
    return digest.hexdigest()


def sqlite_digest(path: Path) -> str:
    """A digest of the database's logical content (schema, rows, user_version)."""
    conn = open_read_only(path)
    try:
        digest = hashlib.sha256(str(conn.execute("PRAGMA user_version").fetchone()).encode())
        for line in conn.iterdump():
            digest.update(line.encode() + b"\n")
        return digest.hexdigest()
    finally:
        conn.close()


def open_read_only(path: Path | str, timeout: float = 5.0) -> sqlite3.Connection:
    """A read-only connection to the database at ``path``: the path is quoted into the
    URI, so ``?``, ``#`` or ``%2e`` in it name a file, never a URI parameter."""
    return sqlite3.connect(f"file:{urllib.parse.quote(str(path))}?mode=ro", uri=True,
                           timeout=timeout)


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run a program with its arguments, no shell: a manifest value is one argument.
    A program that is not there fails as it would in a shell (127)."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False)
    except OSError as error:
        return subprocess.CompletedProcess(argv, 127, "", str(error))


def run_shell(command: str) -> subprocess.CompletedProcess[str]:
    """Run one of the service's declared start/stop/check commands, through the shell
    as documented (the manifest's author wrote them as shell commands)."""
    return subprocess.run(command, shell=True, capture_output=True, text=True, check=False)


# -- packages and services ---------------------------------------------------------

def package_version(item: ItemSpec) -> str | None:
    if item.get("manager", "pip") == "pip":
        result = run([f"{item['venv']}/bin/pip", "show", item["name"]])
        lines = [ln for ln in result.stdout.splitlines() if ln.startswith("Version:")]
        return lines[0].split(":", 1)[1].strip() if result.returncode == 0 and lines else None
    result = run(["dpkg-query", "-W", "-f=${Version}", item["name"]])
    return result.stdout.strip() if result.returncode == 0 else None


def service_running(item: ItemSpec) -> bool:
    return run_shell(item["check"]).returncode == 0 if item.get("check") else False


def backup_database(path: Path | str, copy: Path) -> None:
    """A consistent copy of the SQLite database at ``path`` through its online backup
    API, never a raw copy, into ``copy``: a new file, or a live database whose content it
    replaces in one transaction (written through SQLite's own locks and WAL, so a service
    that keeps it open sees the old content or the new one, never a torn file)."""
    source = open_read_only(path, timeout=30)
    target = sqlite3.connect(str(copy), timeout=30)
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()


def remove(path: Path) -> None:
    """Remove whatever is at ``path`` (a tree: all of it), confined to it (``remove_at``)."""
    try:
        folder = open_folder(str(path.parent))
    except FileNotFoundError:
        return
    try:
        remove_at(folder, leaf_name(path))
    finally:
        os.close(folder)


def restore_package(item: ItemSpec, entry: Entry) -> None:
    wanted = entry["installed"]
    if package_version(item) == wanted:
        return
    name = item["name"]
    if item.get("manager", "pip") == "pip":
        pip = f"{item['venv']}/bin/pip"
        argv = ([pip, "install", "-q", f"{name}=={wanted}"] if wanted
                else [pip, "uninstall", "-y", "-q", name])
    else:
        argv = (["apt-get", "install", "-y", "-q", "--allow-downgrades", f"{name}={wanted}"]
                if wanted else ["apt-get", "remove", "-y", "-q", name])
    result = run(argv)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {result.stderr.strip()[-300:]}")


def set_service(item: ItemSpec, running: bool) -> None:
    if service_running(item) == running:
        return
    command = item["start"] if running else item["stop"]
    result = run_shell(command)
    if result.returncode != 0:
        raise RuntimeError(f"{command}: {(result.stderr or result.stdout).strip()[-300:]}")


# -- verify ----------------------------------------------------------------------------

def item_path(item: ItemSpec) -> Path:
    return Path(item["root"] if item["kind"] == "artifact" else item["path"])


def current_digest(item: ItemSpec) -> str | None:
    kind = item["kind"]
    path = item_path(item)
    if not (path.exists() or path.is_symlink()):
        return None
    if kind == "file":
        return node_digest(path, path.lstat())
    if kind in ("directory", "artifact"):
        return tree_digest(path)
    return sqlite_digest(path) if kind == "data" else None


# -- replication (copy_data, load_data) -------------------------------------------------

def copy_data(request: CopyDataRequest) -> CopyDataReply:
    """A consistent copy of every SQLite data item (online backup API), sent back whole
    with its sha256 and logical digest."""
    index: dict[str, Entry] = {}
    payloads: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="relctl-copy-") as work:
        for item in (i for i in request["items"] if i["kind"] == "data"):
            copy = Path(work) / f"{len(payloads)}.db"
            backup_database(item["path"], copy)
            st = Path(item["path"]).stat()
            name = f"{item['name']}.db"
            payloads[name] = base64.b64encode(copy.read_bytes()).decode()
            index[item["name"]] = {
                "kind": "data", "payload": name, "sha256": sha256_file(copy),
                "bytes": copy.stat().st_size, "mode": st.st_mode, "uid": st.st_uid,
                "gid": st.st_gid, "digest": sqlite_digest(copy)}
    return {"ok": True, "index": index, "payloads": payloads}


def load_data(request: LoadDataRequest) -> LoadDataReply:
    """Replace each live database's content with the replica's (``backup_database``).
    Every payload's sha256 is checked before any database is touched."""
    index = request["index"]
    wanted = [i for i in request["items"] if i["kind"] == "data"]
    digests: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="relctl-load-") as work:
        copies: dict[str, Path] = {}
        for n, item in enumerate(wanted):
            entry = index[item["name"]]
            copy = copies[item["name"]] = Path(work) / f"{n}.db"
            copy.write_bytes(base64.b64decode(request["payloads"][entry["payload"]]))
            if sha256_file(copy) != entry["sha256"]:
                return {"ok": False, "error": f"the replica of {item['name']} fails its sha256"}
        for item in wanted:
            dest = Path(item["path"])
            dest.parent.mkdir(parents=True, exist_ok=True)
            backup_database(copies[item["name"]], dest)
            digests[item["name"]] = sqlite_digest(dest)
            if digests[item["name"]] != index[item["name"]]["digest"]:
                return {"ok": False, "error": f"{dest} does not match the replica after loading"}
    return {"ok": True, "digests": digests}
