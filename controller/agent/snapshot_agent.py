#!/usr/bin/env python3
"""relctl's snapshot agent: capture, restore and verify configuration items on one host.

Runs on the target with the host's own Python 3 (stdlib only); Ansible's ``script``
module ships it. Every command reads a base64 JSON list of items and prints one JSON
document. Item kinds: file, directory, artifact, package, service, data (sqlite).

    capture ITEMS OUT     write each item's payload and OUT/index.json (sha256 of all)
    restore ITEMS BUNDLE  verify BUNDLE's checksums first, then restore every item
    verify ITEMS BUNDLE   compare the host's current state with BUNDLE/index.json
    load ITEMS BUNDLE     copy BUNDLE's databases into the live ones through SQLite's
                          online backup API, while the service keeps running (replication)
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import urllib.parse
from pathlib import Path
from typing import Any

Item = dict[str, Any]
# Snapshots are our own archives of root-owned trees: extract owners and modes as they were.
TAR_OPTS: dict[str, Any] = (
    {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}
)
PATH_KINDS = ("file", "directory", "artifact", "data")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
        if path.is_symlink():
            body = "link:" + os.readlink(path)
        elif path.is_file():
            body = "file:" + sha256_file(path)
        else:
            body = "dir"
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


# -- capture ---------------------------------------------------------------------------

def capture_item(item: Item, out: Path) -> dict[str, Any]:
    kind = item["kind"]
    if kind in PATH_KINDS and not (item_path(item).exists() or item_path(item).is_symlink()):
        return {"absent": True}
    return CAPTURE[kind](item, out)


def capture_file(item: Item, out: Path) -> dict[str, Any]:
    src = Path(item["path"])
    payload = out / f"{item['name']}.file"
    shutil.copy2(src, payload, follow_symlinks=False)
    st = src.lstat()
    return {"payload": payload.name, "mode": st.st_mode, "uid": st.st_uid, "gid": st.st_gid,
            "sha256": sha256_file(payload), "bytes": st.st_size, "digest": sha256_file(src)}


def capture_tree(item: Item, out: Path) -> dict[str, Any]:
    root = Path(item.get("root") or item["path"])
    payload = out / f"{item['name']}.tar"
    with tarfile.open(payload, "w") as tar:
        tar.add(root, arcname=root.name)
    meta = {"payload": payload.name, "sha256": sha256_file(payload),
            "bytes": payload.stat().st_size, "digest": tree_digest(root)}
    current = root / "current"
    if item["kind"] == "artifact" and current.is_symlink():
        meta["current"] = os.readlink(current)
    return meta


def capture_package(item: Item, _out: Path) -> dict[str, Any]:
    return {"installed": package_version(item)}


def package_version(item: Item) -> str | None:
    if item.get("manager", "pip") == "pip":
        result = run([f"{item['venv']}/bin/pip", "show", item["name"]])
        lines = [ln for ln in result.stdout.splitlines() if ln.startswith("Version:")]
        return lines[0].split(":", 1)[1].strip() if result.returncode == 0 and lines else None
    result = run(["dpkg-query", "-W", "-f=${Version}", item["name"]])
    return result.stdout.strip() if result.returncode == 0 else None


def capture_service(item: Item, _out: Path) -> dict[str, Any]:
    return {"running": service_running(item)}


def service_running(item: Item) -> bool:
    return run_shell(item["check"]).returncode == 0 if item.get("check") else False


def backup_database(path: Path | str, copy: Path) -> None:
    """A consistent copy of the SQLite database at ``path`` through its online backup
    API, never a raw copy."""
    source = open_read_only(path, timeout=30)
    target = sqlite3.connect(copy)
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()


def capture_data(item: Item, out: Path) -> dict[str, Any]:
    """A consistent copy through SQLite's online backup API, never a raw copy."""
    payload = out / f"{item['name']}.db"
    backup_database(item["path"], payload)
    st = Path(item["path"]).stat()
    return {"payload": payload.name, "sha256": sha256_file(payload),
            "bytes": payload.stat().st_size, "mode": st.st_mode, "uid": st.st_uid,
            "gid": st.st_gid, "digest": sqlite_digest(payload)}


CAPTURE = {"file": capture_file, "directory": capture_tree, "artifact": capture_tree,
           "package": capture_package, "service": capture_service, "data": capture_data}


def capture(items: list[Item], out: Path) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    index = {item["name"]: {"kind": item["kind"], **capture_item(item, out)} for item in items}
    (out / "index.json").write_text(json.dumps(index, indent=1, sort_keys=True))
    with tarfile.open(out.parent / f"{out.name}.tar", "w") as tar:  # one file to fetch
        tar.add(out, arcname=out.name)
    return {"ok": True, "index": index}


# -- restore ---------------------------------------------------------------------------

def check_bundle(index: dict[str, Any], bundle: Path) -> list[str]:
    """Names of items whose payload is missing or does not match its sha256."""
    bad = []
    for name, meta in index.items():
        payload = meta.get("payload")
        if payload and (not (bundle / payload).exists()
                        or sha256_file(bundle / payload) != meta["sha256"]):
            bad.append(name)
    return bad


def remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def restore_file(item: Item, meta: dict[str, Any], bundle: Path) -> None:
    dest = Path(item["path"])
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.relctl-restore")
    shutil.copyfile(bundle / meta["payload"], tmp)
    os.chown(tmp, meta["uid"], meta["gid"])
    os.chmod(tmp, meta["mode"] & 0o7777)
    os.replace(tmp, dest)


def restore_tree(item: Item, meta: dict[str, Any], bundle: Path) -> None:
    root = Path(item.get("root") or item["path"])
    remove(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(bundle / meta["payload"]) as tar:
        tar.extractall(root.parent, numeric_owner=True, **TAR_OPTS)


def restore_data(item: Item, meta: dict[str, Any], bundle: Path) -> None:
    dest = Path(item["path"])
    for suffix in ("-wal", "-shm", "-journal"):
        Path(f"{dest}{suffix}").unlink(missing_ok=True)
    restore_file(item, meta, bundle)


def restore_package(item: Item, meta: dict[str, Any], _bundle: Path) -> None:
    wanted = meta["installed"]
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


def restore_absent(item: Item) -> None:
    if item["kind"] in PATH_KINDS:
        remove(item_path(item))


RESTORE = {"file": restore_file, "directory": restore_tree, "artifact": restore_tree,
           "data": restore_data, "package": restore_package}


def set_service(item: Item, running: bool) -> None:
    if service_running(item) == running:
        return
    command = item["start"] if running else item["stop"]
    result = run_shell(command)
    if result.returncode != 0:
        raise RuntimeError(f"{command}: {(result.stderr or result.stdout).strip()[-300:]}")


def restore(items: list[Item], bundle: Path) -> dict[str, Any]:
    index = json.loads((bundle / "index.json").read_text())
    bad = check_bundle(index, bundle)
    if bad:
        return {"ok": False, "error": f"snapshot payloads fail their sha256: {bad}"}
    services = [i for i in items if i["kind"] == "service"]
    for service in services:
        set_service(service, running=False)
    for item in items:
        meta = index[item["name"]]
        if meta.get("absent"):
            restore_absent(item)
        elif item["kind"] in RESTORE:
            RESTORE[item["kind"]](item, meta, bundle)
    for service in services:
        set_service(service, running=bool(index[service["name"]]["running"]))
    return {"ok": True, "restored": [i["name"] for i in items]}


# -- load (replication) ----------------------------------------------------------------

def load(items: list[Item], bundle: Path) -> dict[str, Any]:
    """Replace each live database's content with the bundle's, in one SQLite transaction.

    The backup API writes through SQLite's own locking (and WAL), so a service that keeps
    the database open sees the old content or the new one, never a torn file.
    """
    index = json.loads((bundle / "index.json").read_text())
    bad = check_bundle(index, bundle)
    if bad:
        return {"ok": False, "error": f"replica payloads fail their sha256: {bad}"}
    digests = {}
    for item in (i for i in items if i["kind"] == "data"):
        meta = index[item["name"]]
        dest = Path(item["path"])
        dest.parent.mkdir(parents=True, exist_ok=True)
        source = open_read_only(bundle / meta["payload"])
        target = sqlite3.connect(dest, timeout=30)
        try:
            source.backup(target)
        finally:
            target.close()
            source.close()
        digests[item["name"]] = sqlite_digest(dest)
        if digests[item["name"]] != meta["digest"]:
            return {"ok": False, "error": f"{dest} does not match the replica after loading"}
    return {"ok": True, "digests": digests}


# -- verify ----------------------------------------------------------------------------

def item_path(item: Item) -> Path:
    return Path(item["root"] if item["kind"] == "artifact" else item["path"])


def current_digest(item: Item) -> str | None:
    kind = item["kind"]
    path = item_path(item)
    if not (path.exists() or path.is_symlink()):
        return None
    if kind == "file":
        return sha256_file(path)
    if kind in ("directory", "artifact"):
        return tree_digest(path)
    return sqlite_digest(path) if kind == "data" else None


def verify(items: list[Item], bundle: Path) -> dict[str, Any]:
    index = json.loads((bundle / "index.json").read_text())
    mismatches = []
    for item in items:
        meta = index[item["name"]]
        if item["kind"] == "package":
            same = package_version(item) == meta["installed"]
        elif item["kind"] == "service":
            same = service_running(item) == meta["running"]
        elif item["kind"] in PATH_KINDS:
            same = current_digest(item) == (None if meta.get("absent") else meta["digest"])
        else:
            same = True
        if not same:
            mismatches.append(item["name"])
    return {"ok": not mismatches, "mismatches": mismatches}


def main(argv: list[str]) -> int:
    command, encoded, folder = argv[1], argv[2], Path(argv[3])
    items: list[Item] = json.loads(base64.b64decode(encoded))
    handlers = {"capture": capture, "restore": restore, "verify": verify, "load": load}
    try:
        result = handlers[command](items, folder)
    except Exception as exc:  # report every failure as JSON for the controller to read
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(result))
    return 0 if result.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
