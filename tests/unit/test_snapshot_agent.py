"""relctl's host agent on local paths, through its one protocol (the program a host runs):
capture, damage, restore and compare bytes; replica copies sent and loaded; and the
agent's refusals (an old Python, an unknown command, a replica that fails its sha256)."""

from __future__ import annotations

import ast
import base64
import hashlib
import socket
import sqlite3
import sys
from pathlib import Path
from typing import Any, get_type_hints

from pydantic import TypeAdapter

from controller.adapters.host_agent import AGENT_SOURCES
from controller.agent import protocol
from controller.agent import snapshot_agent as agent_lib
from controller.models.items import ConfigItem
from controller.planning.release import agent_item
from controller.planning.snapshots import capture_request, restore_request
from tests.unit.agent_run import agent

SCOPE = "app.lab"


def make_site(root: Path) -> list[dict[str, Any]]:
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "app.conf").write_text("port = 8080\n")
    (root / "etc" / "app.conf").chmod(0o640)
    releases = root / "srv" / "releases"
    (releases / "1.0.0").mkdir(parents=True)
    (releases / "1.0.0" / "app.py").write_text("print('v1')\n")
    (root / "srv" / "current").symlink_to("releases/1.0.0")
    with sqlite3.connect(root / "app.db") as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE tx (id INTEGER PRIMARY KEY, amount INTEGER)")
        db.executemany("INSERT INTO tx (amount) VALUES (?)", [(10,), (20,)])
    return [
        {"kind": "file", "name": "conf", "path": str(root / "etc" / "app.conf")},
        {"kind": "artifact", "name": "code", "root": str(root / "srv")},
        {"kind": "data", "name": "db", "path": str(root / "app.db")},
        {"kind": "file", "name": "absent", "path": str(root / "etc" / "new.conf")},
    ]


def test_restore_brings_back_bytes_modes_symlinks_and_rows(tmp_path: Path) -> None:
    site = tmp_path / "site"
    items = make_site(site)
    host_dir = str(tmp_path / "relctl")
    captured = agent(capture_request(items, host_dir, SCOPE, 1, set(), []))  # type: ignore[arg-type]
    assert captured["ok"], captured
    index = captured["index"]
    assert index["code"]["current"] == "releases/1.0.0"
    assert index["absent"] == {"kind": "file", "absent": True}
    conf_before = (site / "etc" / "app.conf").read_bytes()

    # A release changes everything (the data without a migration: its rows stay live).
    (site / "etc" / "app.conf").write_text("port = 9090\n")
    (site / "etc" / "new.conf").write_text("added\n")
    (site / "srv" / "releases" / "2.0.0").mkdir()
    (site / "srv" / "current").unlink()
    (site / "srv" / "current").symlink_to("releases/2.0.0")
    verify = {"command": "verify", "items": items, "index": index}
    assert agent(verify)["mismatches"] == ["conf", "code", "absent"]

    restored = agent(restore_request(items, host_dir, SCOPE, 1, index))  # type: ignore[arg-type]
    assert restored["ok"], restored
    assert agent(verify) == {"ok": True, "mismatches": []}
    assert (site / "etc" / "app.conf").read_bytes() == conf_before
    assert (site / "etc" / "app.conf").stat().st_mode & 0o777 == 0o640
    assert not (site / "etc" / "new.conf").exists()
    assert str((site / "srv" / "current").readlink()) == "releases/1.0.0"
    with sqlite3.connect(site / "app.db") as db:
        assert db.execute("SELECT id, amount FROM tx").fetchall() == [(1, 10), (2, 20)]


def test_a_damaged_copy_on_the_host_restores_nothing(tmp_path: Path) -> None:
    site = tmp_path / "site"
    items = make_site(site)
    host_dir = tmp_path / "relctl"
    index = agent(capture_request(items, str(host_dir), SCOPE, 1, set(), []))["index"]  # type: ignore[arg-type]
    (site / "etc" / "app.conf").write_text("changed\n")
    damaged = host_dir / "snapshots" / SCOPE / "objects" / index["conf"]["object"]
    damaged.write_text("tampered\n")
    result = agent(restore_request(items, str(host_dir), SCOPE, 1, index))  # type: ignore[arg-type]
    assert not result["ok"] and result["missing"] == [index["conf"]["object"]]
    assert (site / "etc" / "app.conf").read_text() == "changed\n"


def test_copy_data_then_load_data_replaces_a_live_database(tmp_path: Path) -> None:
    items = [i for i in make_site(tmp_path / "site") if i["kind"] == "data"]
    copied = agent({"command": "copy_data", "items": items})
    entry = copied["index"]["db"]
    body = base64.b64decode(copied["payloads"][entry["payload"]])
    assert hashlib.sha256(body).hexdigest() == entry["sha256"]
    backup = tmp_path / "backup.db"
    with sqlite3.connect(backup) as db:
        db.execute("CREATE TABLE other (x)")
    target = [{**items[0], "path": str(backup)}]
    loaded = agent({"command": "load_data", "items": target, "index": copied["index"],
                    "payloads": copied["payloads"]})
    assert loaded == {"ok": True, "digests": {"db": entry["digest"]}}
    with sqlite3.connect(backup) as db:
        assert db.execute("SELECT id, amount FROM tx").fetchall() == [(1, 10), (2, 20)]


def test_a_replica_that_fails_its_sha256_is_not_loaded(tmp_path: Path) -> None:
    items = [i for i in make_site(tmp_path / "site") if i["kind"] == "data"]
    copied = agent({"command": "copy_data", "items": items})
    payload = copied["index"]["db"]["payload"]
    copied["payloads"][payload] = base64.b64encode(b"SQLite format 3\0 forged").decode()
    live = tmp_path / "site" / "app.db"
    before = agent_lib.sqlite_digest(live)
    reply = agent({"command": "load_data", "items": items, "index": copied["index"],
                   "payloads": copied["payloads"]})
    assert not reply["ok"] and "sha256" in reply["error"]
    assert agent_lib.sqlite_digest(live) == before


def test_unknown_commands_and_bad_requests_are_json_errors() -> None:
    assert agent({"command": "rm -rf /"}) == {"ok": False,
                                              "error": "unknown command 'rm -rf /'"}
    reply = agent({"command": "verify"})
    assert not reply["ok"] and reply["error"].startswith("KeyError")


def test_an_older_python_is_refused_before_any_source_runs(tmp_path: Path) -> None:
    # A host interpreter reporting 3.7: the boot line answers before compiling a source.
    fake = tmp_path / "python3.7"
    fake.write_text(f"#!/bin/sh\nexec {sys.executable} -c 'import sys; "
                    "sys.version_info = (3, 7, 9); sys.version = \"3.7.9 (fake)\"; "
                    "exec(sys.argv[1])' \"$2\"\n")
    fake.chmod(0o755)
    reply = agent({"command": "verify", "items": [], "index": {}}, python=str(fake))
    assert not reply["ok"]
    assert reply["error"] == ("relctl's host agent needs Python 3.8 or newer; this host runs "
                              "3.7.9 (set ansible_python_interpreter)")


def test_the_items_relctl_sends_are_the_protocols_item_fields(tmp_path: Path) -> None:
    # Every field of every item model reaches the agent as a field ItemSpec declares.
    source = tmp_path / "app.tar.gz"
    source.write_bytes(b"")
    items = TypeAdapter(list[ConfigItem]).validate_python([
        {"kind": "file", "name": "f", "path": "/etc/f"},
        {"kind": "directory", "name": "d", "path": "/srv/d"},
        {"kind": "artifact", "name": "a", "root": "/srv/a", "source": str(source)},
        {"kind": "package", "name": "p", "version": "1.0", "manager": "pip", "venv": "/opt/v"},
        {"kind": "service", "name": "svc", "start": "true", "stop": "true", "check": "true"},
        {"kind": "data", "name": "db", "path": "/var/db", "on_rollback": "keep",
         "conversion": str(source), "reversible": False, "rollback_rows": {"t": None}}])
    declared = set(get_type_hints(protocol.ItemSpec))
    for item in items:
        assert set(agent_item(item)) <= declared, item.kind


def test_no_two_agent_sources_define_the_same_name() -> None:
    # The host runs every source in one namespace: a later definition would replace an
    # earlier one (a ``restore`` of Litestream's serving a snapshot restore).
    seen: dict[str, str] = {}
    for path in AGENT_SOURCES:
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef | ast.ClassDef):
                names = [node.name]
            elif isinstance(node, ast.Assign):
                names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names = [node.target.id]
            else:
                continue
            for name in names:
                assert name not in seen, f"{name}: {seen[name]} and {path.name}"
                seen[name] = path.name


def test_hello_names_the_hosts_python_and_name() -> None:
    reply = agent({"command": "hello"})
    assert reply == {"ok": True, "python": ".".join(map(str, sys.version_info[:3])),
                     "hostname": socket.gethostname()}
