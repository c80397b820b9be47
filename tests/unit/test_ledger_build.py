"""Build of the ledger sample release tarballs (examples/ledger/build.py)."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import sys
import tarfile
from pathlib import Path
from types import ModuleType

import pytest

BUILD_PY = Path(__file__).resolve().parents[2] / "examples" / "ledger" / "build.py"
VERSIONS = ["1.0.0", "1.1.0", "1.2.0", "2.0.0", "2.0.1"]


def load_module(name: str, path: Path) -> ModuleType:
    """Import a module from a file path (once per test session)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="module")
def build() -> ModuleType:
    return load_module("ledger_build", BUILD_PY)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_lists_all_versions_in_order(build: ModuleType) -> None:
    assert build.list_versions() == VERSIONS


def test_build_is_reproducible(build: ModuleType, tmp_path: Path) -> None:
    first = build.build_all(tmp_path / "a")
    second = build.build_all(tmp_path / "b")
    assert [p.name for p in first] == [f"ledger-{v}.tar.gz" for v in VERSIONS]
    for one, two in zip(first, second, strict=True):
        assert sha256(one) == sha256(two)
        recorded = one.with_name(one.name + ".sha256").read_text().split()
        assert recorded == [sha256(one), one.name]


def test_versions_differ(build: ModuleType, tmp_path: Path) -> None:
    digests = {sha256(p) for p in build.build_all(tmp_path)}
    assert len(digests) == len(VERSIONS)


def test_tarball_layout_and_metadata(build: ModuleType, tmp_path: Path) -> None:
    tarball = build.build("1.2.0", tmp_path)
    with gzip.open(tarball) as gz:
        gz.read(1)
    assert tarball.read_bytes()[4:8] == b"\0\0\0\0"  # gzip header mtime
    with tarfile.open(tarball) as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        version_file = tar.extractfile("ledger-1.2.0/VERSION")
        assert version_file is not None
        assert version_file.read() == b"1.2.0\n"
    assert names == sorted(names)
    assert all(n == "ledger-1.2.0" or n.startswith("ledger-1.2.0/") for n in names)
    for required in ("bin/ledgerctl", "bin/ledger-migrate", "ledger/server.py"):
        assert f"ledger-1.2.0/{required}" in names
    assert {(m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, "root", "root")}
    assert len({m.mtime for m in members}) == 1
    modes = {m.name: m.mode for m in members}
    assert modes["ledger-1.2.0/bin/ledgerctl"] == 0o755
    assert modes["ledger-1.2.0/ledger/db.py"] == 0o644
    assert not any("__pycache__" in n or n.endswith((".pyc", "/BASE")) for n in names)


def test_overlays_add_and_replace_modules(build: ModuleType) -> None:
    v100, v110 = build.release_tree("1.0.0"), build.release_tree("1.1.0")
    v120, v201 = build.release_tree("1.2.0"), build.release_tree("2.0.1")
    assert "ledger/features/balance.py" not in v100
    assert "ledger/features/balance.py" in v110
    assert b"SCHEMA = 1" in v110["ledger/schema.py"]
    assert b"SCHEMA = 2" in v120["ledger/schema.py"]
    assert "ledger/signing.py" in v201 and "ledger/signing.py" not in v120
    assert v100["ledger/server.py"] == v201["ledger/server.py"]


def test_unknown_version_is_rejected(build: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown ledger version"):
        build.build("9.9.9", tmp_path)
    assert build.main(["--out", str(tmp_path), "--version", "9.9.9"]) == 2


def test_cli_builds_selected_versions(build: ModuleType, tmp_path: Path) -> None:
    assert build.main(["--out", str(tmp_path), "--version", "1.1.0"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "ledger-1.1.0.tar.gz",
        "ledger-1.1.0.tar.gz.sha256",
    ]
