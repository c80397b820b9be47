"""The state directory is private: created 0700, its journal, snapshot objects and
connection cache unreadable by others, and a folder or cache another user owns or may
write to is refused (exit 2, naming it and the fix) before anything in it is trusted."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.adapters.ansible import read_inventory
from controller.adapters.connections import resolve_connections
from controller.adapters.snapshot_store import ObjectStore
from controller.errors import InputError
from controller.journal import Journal
from tests.unit.hostile import run_cli

NOBODY = 65534
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask, whatever the test runner's: relctl must not rely on a strict one."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.usefixtures("umask_022")
def test_a_new_state_dir_and_its_journal_are_private(tmp_path: Path) -> None:
    state = tmp_path / "var" / "relctl"
    ran = run_cli(state, "history", "--json")
    assert ran.code == 0, ran
    assert mode(state) == 0o700
    assert mode(state / "journal.sqlite") == 0o600
    assert "notice" not in ran.stderr  # created private: nothing to tighten


@pytest.mark.usefixtures("umask_022")
def test_a_state_dir_of_an_older_relctl_is_tightened_with_a_notice(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    os.chmod(state, 0o755)
    ran = run_cli(state, "history", "--json")
    assert ran.code == 0, ran
    assert mode(state) == 0o700
    assert f"tightened the state directory {state} to 0700" in ran.stderr


def test_a_readable_folder_that_is_not_relctls_is_refused_not_changed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / ".profile").write_text("# someone's\n")
    os.chmod(home, 0o755)
    ran = run_cli(home, "history")
    assert ran.code == 2, ran
    assert f"{home} is readable by others" in ran.stderr
    assert f"chmod 700 {home}" in ran.stderr
    assert mode(home) == 0o755
    assert not (home / "journal.sqlite").exists()


@pytest.mark.parametrize("loose", [0o777, 0o775, 0o757, 0o1777], ids=oct)
def test_a_state_dir_others_may_write_is_refused(tmp_path: Path, loose: int) -> None:
    state = tmp_path / "state"
    state.mkdir()
    os.chmod(state, loose)
    ran = run_cli(state, "history")
    assert ran.code == 2, ran
    assert f"{state} is writable by group or others" in ran.stderr
    assert f"chmod 700 {state}" in ran.stderr
    assert not (state / "journal.sqlite").exists()  # nothing trusted, nothing written
    assert mode(state) == loose  # left as it was: a human looks first


@as_root
def test_a_state_dir_another_user_owns_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    os.chown(state, NOBODY, NOBODY)
    ran = run_cli(state, "history")
    assert ran.code == 2, ran
    assert f"{state} is owned by" in ran.stderr
    assert "chown" in ran.stderr
    assert not (state / "journal.sqlite").exists()


@as_root
def test_a_folder_inside_the_state_dir_another_user_owns_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "runs").mkdir(parents=True, mode=0o700)
    os.chmod(state, 0o700)
    os.chown(state / "runs", NOBODY, NOBODY)
    ran = run_cli(state, "history")
    assert ran.code == 2, ran
    assert f"{state / 'runs'} is owned by" in ran.stderr


@pytest.mark.usefixtures("umask_022")
def test_a_journal_elsewhere_is_created_0600_and_an_old_one_loses_its_world_bits(
        tmp_path: Path) -> None:
    new = tmp_path / "shared" / "new.sqlite"
    assert run_cli(tmp_path / "state", "--journal", str(new), "history").code == 0
    assert mode(new) == 0o600
    assert mode(new.parent) == 0o700
    old = tmp_path / "old.sqlite"
    Journal(old).close()
    os.chmod(old, 0o644)  # as an older relctl left it
    assert run_cli(tmp_path / "state", "--journal", str(old), "history").code == 0
    assert mode(old) == 0o640  # a group may share a journal on purpose; everybody never


def test_plan_without_a_lab_creates_no_state_dir(tmp_path: Path) -> None:
    ran = run_cli(tmp_path / "state", "plan", str(tmp_path / "missing.yml"))
    assert ran.code == 2
    assert not (tmp_path / "state").exists()


# --- the snapshot store -----------------------------------------------------------------


@pytest.mark.usefixtures("umask_022")
def test_snapshot_objects_are_0600_in_0700_folders(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "snapshots" / "objects")
    data = b"db_password = hunter2\n"
    sha = hashlib.sha256(data).hexdigest()
    store.put(sha, data)
    dump = tmp_path / "dump.sql"
    dump.write_bytes(b"-- a database dump\n")
    os.chmod(dump, 0o644)
    moved = store.put_file(dump)
    for name in (sha, moved):
        assert mode(store.path(name)) == 0o600
        assert mode(store.path(name).parent) == 0o700
    assert mode(store.root) == 0o700
    assert store.names() == {sha, moved}  # no temporary file left behind


# --- the connection cache ---------------------------------------------------------------


@pytest.fixture
def inventory(tmp_path: Path) -> tuple[Path, Path]:
    hosts = tmp_path / "hosts.yml"
    hosts.write_text("all:\n  hosts:\n    h1:\n      ansible_host: 127.0.0.1\n")
    cfg = tmp_path / "ansible.cfg"
    cfg.write_text("[defaults]\n")
    return hosts, cfg


def cache_files(cache: Path) -> list[Path]:
    return sorted(cache.glob("*.json"))


@pytest.mark.usefixtures("umask_022")
def test_the_connection_cache_is_written_private(tmp_path: Path,
                                                 inventory: tuple[Path, Path]) -> None:
    cache = tmp_path / "connections"
    found = resolve_connections(*inventory, ["h1"], cache)
    assert found["h1"].argv[0] == "ssh"
    [cached] = cache_files(cache)
    assert mode(cached) == 0o600
    assert mode(cache) == 0o700
    assert resolve_connections(*inventory, ["h1"], cache) == found  # read back


def test_one_cache_gathers_every_host_and_follows_the_inventory(
        tmp_path: Path, inventory: tuple[Path, Path]) -> None:
    """The canary's host, then the next batch's: one file per inventory and configuration,
    each host asked of Ansible once; an edited inventory is a new file, asked again."""
    hosts, _cfg = inventory
    hosts.write_text("all:\n  hosts:\n    h1:\n      ansible_host: 127.0.0.1\n"
                     "    h2:\n      ansible_host: 127.0.0.2\n")
    cache = tmp_path / "connections"
    first = resolve_connections(*inventory, ["h1"], cache)
    both = resolve_connections(*inventory, ["h1", "h2"], cache)
    [cached] = cache_files(cache)
    assert sorted(json.loads(cached.read_text())) == ["h1", "h2"]
    assert both["h1"] == first["h1"] and both["h2"].argv[-1] == "127.0.0.2"
    assert list(resolve_connections(*inventory, ["h2"], cache)) == ["h2"]
    hosts.write_text(hosts.read_text().replace("127.0.0.2", "127.0.0.3"))
    moved = resolve_connections(*inventory, ["h2"], cache)
    assert moved["h2"].argv[-1] == "127.0.0.3" and len(cache_files(cache)) == 2


def plant(cache: Path, inventory: tuple[Path, Path]) -> Path:
    """A cache entry whose ssh command is someone else's."""
    resolve_connections(*inventory, ["h1"], cache)
    [cached] = cache_files(cache)
    answers = json.loads(cached.read_text())
    answers["h1"]["argv"] = ["sh", "-c", "id > /tmp/relctl-pwned"]
    cached.write_text(json.dumps(answers))
    return cached


@as_root
def test_a_cache_another_user_owns_is_refused(tmp_path: Path,
                                              inventory: tuple[Path, Path]) -> None:
    cached = plant(tmp_path / "connections", inventory)
    os.chown(cached, NOBODY, NOBODY)
    with pytest.raises(InputError) as refused:
        resolve_connections(*inventory, ["h1"], tmp_path / "connections")
    assert str(cached) in refused.value.message
    assert refused.value.hint and "chown" in refused.value.hint


@pytest.mark.parametrize(("where", "loose"), [("file", 0o666), ("file", 0o620),
                                              ("folder", 0o777), ("folder", 0o1777)],
                         ids=["file-0666", "file-0620", "folder-0777", "folder-01777"])
def test_a_cache_others_may_write_is_refused(tmp_path: Path, inventory: tuple[Path, Path],
                                             where: str, loose: int) -> None:
    cached = plant(tmp_path / "connections", inventory)
    os.chmod(cached if where == "file" else cached.parent, loose)
    with pytest.raises(InputError) as refused:
        resolve_connections(*inventory, ["h1"], tmp_path / "connections")
    assert "writable by group or others" in refused.value.message
    assert refused.value.hint and "chmod" in refused.value.hint


def test_a_link_planted_as_the_cache_is_refused(tmp_path: Path,
                                                inventory: tuple[Path, Path]) -> None:
    cached = plant(tmp_path / "connections", inventory)
    elsewhere = tmp_path / "elsewhere.json"
    cached.rename(elsewhere)
    cached.symlink_to(elsewhere)
    with pytest.raises(InputError):
        resolve_connections(*inventory, ["h1"], tmp_path / "connections")


def test_a_release_reads_its_inventory_once_until_it_changes(
        tmp_path: Path, inventory: tuple[Path, Path]) -> None:
    """Each gate of each batch asks for the inventory: ansible-inventory runs once, again
    when the inventory is edited."""
    hosts, cfg = inventory
    first = read_inventory(hosts, cfg)
    assert first.addresses == {"h1": "127.0.0.1"}
    assert read_inventory(hosts, cfg) is first
    hosts.write_text(hosts.read_text().replace("127.0.0.1", "127.0.0.9"))
    assert read_inventory(hosts, cfg).addresses == {"h1": "127.0.0.9"}
