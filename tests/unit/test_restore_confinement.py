"""Restores confined to their items (issue 25), through the agent program a host runs:
a link a service user plants is never written through, a crafted member name or release
path writes nothing, a ``current`` link out of its artifact root is refused at capture
(exit 2 at the controller), and links, FIFOs and sockets are captured as what they are
or refused, never followed and never hung on."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import stat
from pathlib import Path
from typing import Any

import pytest

from controller.engine.snapshots import SnapshotError, SnapshotRefusedError
from controller.errors import ExitCode
from controller.planning.snapshots import capture_request, restore_request
from tests.unit.agent_run import agent

SCOPE = "app.lab"
SERVICE_UID = 65534  # "nobody": the service user who owns the item's folder
HANG = 20  # seconds: an agent still running after this hung

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")


def capture(items: list[dict[str, Any]], host_dir: Path, snapshot: int = 1) -> dict[str, Any]:
    return agent(capture_request(items, str(host_dir), SCOPE, snapshot, set(), []),  # type: ignore[arg-type]
                 timeout=HANG)


def restore(items: list[dict[str, Any]], host_dir: Path, index: dict[str, Any],
            objects: dict[str, str] | None = None) -> dict[str, Any]:
    return agent(restore_request(items, str(host_dir), SCOPE, 1, index, objects),  # type: ignore[arg-type]
                 timeout=HANG)


def verify(items: list[dict[str, Any]], index: dict[str, Any]) -> dict[str, Any]:
    return agent({"command": "verify", "items": items, "index": index}, timeout=HANG)


def root_file(path: Path) -> Path:
    """A file only root reads: what an attacker wants overwritten."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("root only\n")
    path.chmod(0o600)
    return path


def unchanged(path: Path) -> bool:
    st = path.lstat()
    return (path.read_text(), st.st_uid, stat.S_IMODE(st.st_mode)) == ("root only\n", 0, 0o600)


def planted_link(link: Path, target: Path) -> None:
    """A link the service user made (owned by it)."""
    link.symlink_to(target)
    os.lchown(link, SERVICE_UID, SERVICE_UID)


def b64(data: bytes) -> tuple[str, str]:
    return hashlib.sha256(data).hexdigest(), base64.b64encode(data).decode()


# -- links planted by the service user ----------------------------------------------------

@needs_root
def test_links_planted_at_the_restore_name_and_the_item_do_not_redirect_the_write(
        tmp_path: Path) -> None:
    folder = tmp_path / "site" / "etc"
    folder.mkdir(parents=True)
    conf = folder / "app.conf"
    conf.write_text("port = 8080\n")
    conf.chmod(0o640)
    os.chown(folder, SERVICE_UID, SERVICE_UID)  # the service owns the item's folder
    items = [{"kind": "file", "name": "conf", "path": str(conf)}]
    index = capture(items, tmp_path / "relctl")["index"]
    victim = root_file(tmp_path / "root" / "shadow")
    # the old restore's temporary name, and the item itself, linked to root's file
    planted_link(folder / ".app.conf.relctl-restore", victim)
    conf.unlink()
    planted_link(conf, victim)
    reply = restore(items, tmp_path / "relctl", index)
    assert reply["ok"], reply
    assert unchanged(victim)
    assert not conf.is_symlink() and conf.read_text() == "port = 8080\n"
    assert (conf.stat().st_uid, stat.S_IMODE(conf.stat().st_mode)) == (0, 0o640)
    assert not [p for p in folder.iterdir() if p.name.startswith(".relctl-")]


@needs_root
def test_a_link_planted_on_the_items_path_is_not_followed(tmp_path: Path) -> None:
    service = tmp_path / "site" / "svc"
    (service / "conf").mkdir(parents=True)
    conf = service / "conf" / "app.conf"
    conf.write_text("port = 8080\n")
    os.chown(service, SERVICE_UID, SERVICE_UID)
    items = [{"kind": "file", "name": "conf", "path": str(conf)}]
    index = capture(items, tmp_path / "relctl")["index"]
    elsewhere = tmp_path / "root-only"
    elsewhere.mkdir()
    (service / "conf").rename(service / "old")
    planted_link(service / "conf", elsewhere)  # conf/ now leads into root's folder
    reply = restore(items, tmp_path / "relctl", index)
    assert not reply["ok"] and "not followed" in reply["error"], reply
    assert list(elsewhere.iterdir()) == []


# -- crafted snapshots: nothing written outside the item ---------------------------------

@pytest.mark.parametrize("name", ["../escape.txt", "a/../../escape.txt", "ABSOLUTE",
                                  "./escape.txt", "a\0b"])
def test_a_crafted_member_name_restores_nothing(tmp_path: Path, name: str) -> None:
    tree = tmp_path / "site" / "conf.d"
    tree.mkdir(parents=True)
    (tree / "a.conf").write_text("a\n")
    items = [{"kind": "directory", "name": "confd", "path": str(tree)}]
    index = capture(items, tmp_path / "relctl")["index"]
    outside = tmp_path / "site" / "escape.txt"
    body_sha, body = b64(b"#!/bin/sh\nid\n")
    member = str(outside) if name == "ABSOLUTE" else name
    crafted = json.dumps([[".", "dir", 0o40755, 0, 0, 0, None],
                          [member, "file", 0o104755, 0, 0, 0, body_sha]]).encode()
    tree_sha, tree_b64 = b64(crafted)
    (tree / "a.conf").write_text("changed\n")
    index["confd"]["tree"] = tree_sha
    reply = restore(items, tmp_path / "relctl", index, {tree_sha: tree_b64, body_sha: body})
    assert not reply["ok"] and "not a relative path inside the tree" in reply["error"], reply
    assert "confd" in reply["error"]
    assert not outside.exists() and not (tmp_path / "escape.txt").exists()
    assert (tree / "a.conf").read_text() == "changed\n"  # nothing written at all


def test_a_crafted_release_outside_the_artifact_root_restores_nothing(tmp_path: Path) -> None:
    root = tmp_path / "site" / "srv"
    (root / "releases" / "1.0.0").mkdir(parents=True)
    (root / "releases" / "1.0.0" / "app.py").write_text("v1\n")
    (root / "current").symlink_to("releases/1.0.0")
    items = [{"kind": "artifact", "name": "code", "root": str(root)}]
    index = capture(items, tmp_path / "relctl")["index"]
    outside = tmp_path / "elsewhere"
    index["code"].update(current=str(outside), release=str(outside))
    reply = restore(items, tmp_path / "relctl", index)
    assert not reply["ok"] and "outside the artifact root" in reply["error"], reply
    assert not outside.exists()
    assert os.readlink(root / "current") == "releases/1.0.0"


@pytest.mark.parametrize("how", ["absolute", "dotdot", "through-a-link"])
def test_a_current_link_outside_the_artifact_root_is_refused_at_capture(
        tmp_path: Path, how: str) -> None:
    root = tmp_path / "site" / "srv"
    root.mkdir(parents=True)
    outside = tmp_path / "etc-like"
    outside.mkdir()
    (outside / "passwd").write_text("root:x:0:0\n")
    if how == "through-a-link":
        (root / "releases").symlink_to(tmp_path)
        target = "releases/etc-like"
    else:
        target = str(outside) if how == "absolute" else "../../etc-like"
    (root / "current").symlink_to(target)
    items = [{"kind": "artifact", "name": "code", "root": str(root)}]
    reply = capture(items, tmp_path / "relctl")
    assert not reply["ok"] and reply["refused"], reply
    assert "item code" in reply["error"] and f"{root}/current -> {target}" in reply["error"]
    assert "outside the artifact root" in reply["error"]
    assert not list((tmp_path / "relctl" / "snapshots" / SCOPE).glob("*.json"))


def test_a_refused_capture_is_bad_input_at_the_controller() -> None:
    # exit 2, and still a SnapshotError for everything that catches those
    error = SnapshotRefusedError("snapshot refused: h: item code: ...")
    assert error.exit_code == ExitCode.INVALID_INPUT == 2
    assert isinstance(error, SnapshotError)


# -- links, FIFOs, sockets ------------------------------------------------------------------

def test_a_fifo_file_item_does_not_hang_and_comes_back_a_fifo(tmp_path: Path) -> None:
    fifo = tmp_path / "site" / "app.pipe"
    fifo.parent.mkdir()
    os.mkfifo(fifo)
    fifo.chmod(0o620)
    items = [{"kind": "file", "name": "pipe", "path": str(fifo)}]
    captured = capture(items, tmp_path / "relctl")  # the old agent waited for a writer
    assert captured["ok"], captured
    index = captured["index"]
    assert index["pipe"]["type"] == "fifo"
    fifo.unlink()
    fifo.write_text("a regular file now\n")
    assert verify(items, index)["mismatches"] == ["pipe"]
    reply = restore(items, tmp_path / "relctl", index)
    assert reply["ok"], reply
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert stat.S_IMODE(fifo.lstat().st_mode) == 0o620


def test_a_symlink_file_item_comes_back_a_symlink(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "app-1.conf").write_text("port = 1\n")
    link = site / "app.conf"
    link.symlink_to("app-1.conf")
    items = [{"kind": "file", "name": "conf", "path": str(link)}]
    index = capture(items, tmp_path / "relctl")["index"]
    assert index["conf"]["type"] == "link" and index["conf"]["target"] == "app-1.conf"
    link.unlink()
    link.write_text("port = 1\n")  # the same bytes, but no link: not what was captured
    assert verify(items, index)["mismatches"] == ["conf"]
    reply = restore(items, tmp_path / "relctl", index)
    assert reply["ok"], reply
    assert link.is_symlink() and os.readlink(link) == "app-1.conf"
    assert (site / "app-1.conf").read_text() == "port = 1\n"


def test_a_fifo_in_a_tree_comes_back_a_fifo_not_a_folder(tmp_path: Path) -> None:
    tree = tmp_path / "site" / "run"
    tree.mkdir(parents=True)
    os.mkfifo(tree / "control", 0o600)
    (tree / "state").write_text("ok\n")
    items = [{"kind": "directory", "name": "run", "path": str(tree)}]
    index = capture(items, tmp_path / "relctl")["index"]
    (tree / "control").unlink()
    (tree / "control").mkdir()
    assert verify(items, index)["mismatches"] == ["run"]
    reply = restore(items, tmp_path / "relctl", index)
    assert reply["ok"], reply
    assert stat.S_ISFIFO((tree / "control").lstat().st_mode)
    assert (tree / "state").read_text() == "ok\n"


def test_a_socket_file_item_is_refused_with_its_item_and_path(tmp_path: Path) -> None:
    path = tmp_path / "app.sock"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        reply = capture([{"kind": "file", "name": "sock", "path": str(path)}],
                        tmp_path / "relctl")
    assert not reply["ok"] and reply["refused"], reply
    assert reply["error"].startswith(f"item sock: {path} is a socket")


@needs_root
def test_verification_compares_mode_and_owner_not_only_bytes(tmp_path: Path) -> None:
    conf = tmp_path / "app.conf"
    conf.write_text("port = 8080\n")
    conf.chmod(0o600)
    items = [{"kind": "file", "name": "conf", "path": str(conf)}]
    index = capture(items, tmp_path / "relctl")["index"]
    conf.chmod(0o666)
    assert verify(items, index)["mismatches"] == ["conf"]
    conf.chmod(0o600)
    os.chown(conf, SERVICE_UID, SERVICE_UID)
    assert verify(items, index)["mismatches"] == ["conf"]
    assert restore(items, tmp_path / "relctl", index)["ok"]
    assert verify(items, index) == {"ok": True, "mismatches": []}
