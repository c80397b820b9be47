"""The snapshot agent on local paths: capture, damage, restore, and compare bytes."""

from __future__ import annotations

import base64
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from controller.agent import snapshot_agent as agent

AGENT = Path(agent.__file__)


def call(command: str, items: list[dict[str, Any]], folder: Path) -> dict[str, Any]:
    encoded = base64.b64encode(json.dumps(items).encode()).decode()
    result = subprocess.run([sys.executable, str(AGENT), command, encoded, str(folder)],
                            capture_output=True, text=True, check=False)
    return json.loads(result.stdout)  # type: ignore[no-any-return]


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
    items = make_site(tmp_path / "site")
    site = tmp_path / "site"
    bundle = tmp_path / "bundle"
    captured = call("capture", items, bundle)
    assert captured["ok"], captured
    assert captured["index"]["code"]["current"] == "releases/1.0.0"
    assert captured["index"]["absent"] == {"kind": "file", "absent": True}

    # A release changes everything.
    (site / "etc" / "app.conf").write_text("port = 9090\n")
    (site / "etc" / "new.conf").write_text("added\n")
    (site / "srv" / "releases" / "2.0.0").mkdir()
    (site / "srv" / "current").unlink()
    (site / "srv" / "current").symlink_to("releases/2.0.0")
    with sqlite3.connect(site / "app.db") as db:
        db.execute("ALTER TABLE tx ADD COLUMN currency TEXT")
        db.execute("DELETE FROM tx WHERE id = 1")
    assert call("verify", items, bundle)["mismatches"] == ["conf", "code", "db", "absent"]

    assert call("restore", items, bundle)["ok"]
    assert call("verify", items, bundle) == {"ok": True, "mismatches": []}
    assert (site / "etc" / "app.conf").read_text() == "port = 8080\n"
    assert (site / "etc" / "app.conf").stat().st_mode & 0o777 == 0o640
    assert not (site / "etc" / "new.conf").exists()
    assert str((site / "srv" / "current").readlink()) == "releases/1.0.0"
    assert not (site / "srv" / "releases" / "2.0.0").exists()
    with sqlite3.connect(site / "app.db") as db:
        assert db.execute("SELECT id, amount FROM tx").fetchall() == [(1, 10), (2, 20)]
    assert agent.sha256_file(site / "app.db") == captured["index"]["db"]["sha256"]


def test_a_damaged_bundle_restores_nothing(tmp_path: Path) -> None:
    items = make_site(tmp_path / "site")
    bundle = tmp_path / "bundle"
    call("capture", items, bundle)
    (tmp_path / "site" / "etc" / "app.conf").write_text("changed\n")
    (bundle / "conf.file").write_text("tampered\n")
    result = call("restore", items, bundle)
    assert not result["ok"] and "conf" in result["error"]
    assert (tmp_path / "site" / "etc" / "app.conf").read_text() == "changed\n"
