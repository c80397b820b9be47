"""Lean snapshots without a lab: retention as data, the content-addressed store, and the
host-side agent run locally through the same ``python -c`` program relctl sends over ssh."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from controller.adapters.snapshot_store import ObjectMismatchError, ObjectStore
from controller.planning.snapshots import (
    Held,
    capture_request,
    entry_objects,
    restore_request,
    retained,
    rollback_targets,
)
from tests.unit.agent_run import agent
from tests.unit.test_snapshot_agent import make_site

SCOPE = "app.lab"


# -- retention -------------------------------------------------------------------------

@pytest.mark.parametrize(("states", "keep", "kept"), [
    # the newest released release is the rollback target, however small keep is
    (["released", "released", "released"], 1, {3}),
    (["released", "released", "rolled_back"], 1, {2, 3}),
    # a release in flight or whose rollback failed needs its snapshot (resume, rollback)
    (["released", "applying", "released", "rollback_failed"], 1, {3, 4}),
    (["released", "released", "aborted", "rolled_back"], 2, {2, 3, 4}),
    # superseded by a later released release: only kept while within keep
    (["released", "failed", "released"], 2, {2, 3}),
    (["released", "failed", "released"], 1, {3}),
])
def test_retention_keeps_the_newest_and_every_rollback_target(
        states: list[str], keep: int, kept: set[int]) -> None:
    held = [Held(n, state) for n, state in enumerate(states, start=1)]
    assert retained(held, keep) == kept
    assert rollback_targets(held) <= retained(held, keep)


def test_retention_never_drops_a_rollback_target_whatever_keep() -> None:
    for n in range(1, 30):
        held = [Held(i, "released" if i % 3 else "rolled_back") for i in range(1, n + 1)]
        held.append(Held(n + 1, "snapshotting"))
        for keep in (1, 2, 5):
            kept = retained(held, keep)
            assert rollback_targets(held) <= kept
            assert n + 1 in kept


# -- the controller's store ------------------------------------------------------------

def test_objects_are_stored_once_under_their_sha256(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "objects")
    data = b"release tree member\n"
    sha = hashlib.sha256(data).hexdigest()
    store.put(sha, data)
    store.put(sha, data)
    assert store.names() == {sha}
    assert store.read(sha) == data and store.intact(sha)
    with pytest.raises(ObjectMismatchError):
        store.put("0" * 64, data)
    assert store.names() == {sha}


def test_drop_keeps_needed_and_recent_objects(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "objects")
    shas = []
    for text in (b"a", b"b", b"c"):
        sha = hashlib.sha256(text).hexdigest()
        store.put(sha, text)
        shas.append(sha)
    old = time.time() - 3600
    for sha in shas[:2]:
        os.utime(store.path(sha), (old, old))
    store.drop_except({shas[0]})
    assert store.names() == {shas[0], shas[2]}  # shas[2] is recent: within the grace


def test_entry_objects_follow_a_tree_to_its_members() -> None:
    members = {"t": [[".", "dir", 0, 0, 0, 0, None], ["a", "file", 0, 0, 0, 0, "x"],
                     ["l", "link", 0, 0, 0, 0, "a"]]}
    assert entry_objects({"tree": "t"}, members.__getitem__) == {"t", "x"}
    assert entry_objects({"object": "y"}, members.__getitem__) == {"y"}
    assert entry_objects({"running": True}, members.__getitem__) == set()


# -- the agent on the host -------------------------------------------------------------

def snapshot(site: Path, items: list[dict[str, Any]], number: int,
             known: set[str] | None = None) -> dict[str, Any]:
    reply = agent(capture_request(items, str(site / "relctl"), SCOPE, number, known or set(),
                                  []))
    assert reply["ok"], reply
    return reply


def digest_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_capture_takes_the_current_release_only_and_stores_payloads_once(tmp_path: Path
                                                                         ) -> None:
    site = tmp_path / "site"
    items = make_site(site)
    old = site / "srv" / "releases" / "0.9.0"
    old.mkdir()
    (old / "big.bin").write_bytes(os.urandom(50_000))
    first = snapshot(site, items, 1)
    sent = sum(len(v) for v in first["objects"].values())
    assert sent < 20_000, "an old release was captured"
    assert first["index"]["code"]["current"] == "releases/1.0.0"
    again = snapshot(site, items, 2, known=set(first["objects"]))
    assert again["objects"] == {}, "unchanged payloads were sent twice"
    host_copy = site / "relctl"
    assert oct(host_copy.stat().st_mode & 0o777) == "0o700"
    assert {p.name for p in (host_copy / "snapshots" / SCOPE).glob("*.json")} == {"2.json"}


def test_restore_switches_back_a_release_still_on_disk(tmp_path: Path) -> None:
    site = tmp_path / "site"
    items = make_site(site)
    taken = snapshot(site, items, 1)
    conf = digest_of(site / "etc" / "app.conf")
    (site / "srv" / "releases" / "2.0.0").mkdir()
    (site / "srv" / "current").unlink()
    (site / "srv" / "current").symlink_to("releases/2.0.0")
    (site / "etc" / "app.conf").write_text("port = 1\n")
    reply = agent(restore_request(items, str(site / "relctl"), SCOPE, 1, taken["index"]))
    assert reply["ok"], reply
    assert reply["restored"]["code"] == "switched"
    assert os.readlink(site / "srv" / "current") == "releases/1.0.0"
    assert digest_of(site / "etc" / "app.conf") == conf


def test_restore_asks_for_what_the_host_lost_then_unpacks_it(tmp_path: Path) -> None:
    site = tmp_path / "site"
    items = make_site(site)
    taken = snapshot(site, items, 1)
    code = digest_of(site / "srv" / "releases" / "1.0.0" / "app.py")
    shutil.rmtree(site / "srv" / "releases" / "1.0.0")
    objects = site / "relctl" / "snapshots" / SCOPE / "objects"
    for obj in objects.iterdir():
        obj.write_bytes(b"corrupted")
    request = restore_request(items, str(site / "relctl"), SCOPE, 1, taken["index"])
    refused = agent(request)
    assert not refused["ok"] and refused["missing"]
    assert not (site / "srv" / "releases" / "1.0.0").exists(), "touched before it could"
    uploaded = {sha: taken["objects"][sha] for sha in taken["objects"]}
    reply = agent({**request, "objects": uploaded})
    assert reply["ok"], reply
    assert reply["restored"]["code"] == "unpacked"
    assert digest_of(site / "srv" / "releases" / "1.0.0" / "app.py") == code
