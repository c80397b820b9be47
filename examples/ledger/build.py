#!/usr/bin/env python3
"""Build reproducible release tarballs of the ledger sample service.

Each version is the base tree ``src/`` overlaid with the files of every
version on its ``BASE`` chain (``versions/<v>/``: only the modules that
version adds or replaces).  ``ledger-<v>.tar.gz`` contains ``ledger-<v>/``
with ``VERSION``, ``ledger/`` and ``bin/``; a ``.sha256`` file sits beside it.

Usage: python3 examples/ledger/build.py [--out DIR] [--version X ...]
Importable by path: ``list_versions()``, ``build()``, ``build_all()``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import os
import sys
import tarfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE / "src"
VERSIONS = HERE / "versions"
DEFAULT_OUT = HERE.parent.parent / "build" / "artifacts"
META_FILES = {"VERSION", "BASE"}
# Fixed timestamp for every archive member (2024-01-01T00:00:00Z);
# SOURCE_DATE_EPOCH overrides it.
DEFAULT_EPOCH = 1704067200


def version_key(version: str) -> tuple[int, ...]:
    """Sort key for dotted numeric versions."""
    return tuple(int(part) for part in version.split("."))


def list_versions() -> list[str]:
    """All buildable versions, oldest first."""
    found = [p.name for p in VERSIONS.iterdir() if (p / "VERSION").is_file()]
    return sorted(found, key=version_key)


def chain(version: str) -> list[str]:
    """``version`` and its BASE ancestors, oldest first."""
    seen: list[str] = []
    current: str | None = version
    while current is not None:
        vdir = VERSIONS / current
        if not (vdir / "VERSION").is_file():
            raise ValueError(f"unknown ledger version {current!r}")
        declared = (vdir / "VERSION").read_text(encoding="utf-8").strip()
        if declared != current:
            raise ValueError(f"{vdir}/VERSION says {declared!r}, expected {current!r}")
        if current in seen:
            raise ValueError(f"BASE cycle at {current}")
        seen.append(current)
        base = vdir / "BASE"
        current = base.read_text(encoding="utf-8").strip() if base.is_file() else None
    return list(reversed(seen))


def source_files(root: Path) -> dict[str, Path]:
    """Relative path -> file for one tree, skipping caches and metadata."""
    files: dict[str, Path] = {}
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if not path.is_file() or "__pycache__" in rel.parts or path.suffix == ".pyc":
            continue
        if len(rel.parts) == 1 and rel.name in META_FILES:
            continue
        files[rel.as_posix()] = path
    return files


def release_tree(version: str) -> dict[str, bytes]:
    """Relative path (inside the top dir) -> content for ``version``."""
    files = source_files(SRC)
    for name in chain(version):
        files.update(source_files(VERSIONS / name))
    tree = {rel: path.read_bytes() for rel, path in files.items()}
    tree["VERSION"] = f"{version}\n".encode("ascii")
    return tree


def directories(paths: list[str]) -> list[str]:
    """Every parent directory of ``paths``."""
    dirs: set[str] = set()
    for rel in paths:
        parts = rel.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))
    return sorted(dirs)


def tar_info(name: str, mtime: int, size: int = 0, mode: int = 0o644) -> tarfile.TarInfo:
    """A normalised archive member header."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, mtime, mode
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def tar_bytes(version: str, tree: dict[str, bytes], mtime: int) -> bytes:
    """Uncompressed, deterministic tar of ``tree`` under ``ledger-<version>/``."""
    top = f"ledger-{version}"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dir_info = tar_info(top, mtime, mode=0o755)
        dir_info.type = tarfile.DIRTYPE
        tar.addfile(dir_info)
        entries = [(d, None) for d in directories(list(tree))] + sorted(tree.items())
        for rel, data in sorted(entries, key=lambda e: e[0]):
            if data is None:
                info = tar_info(f"{top}/{rel}", mtime, mode=0o755)
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
                continue
            mode = 0o755 if rel.startswith("bin/") else 0o644
            tar.addfile(tar_info(f"{top}/{rel}", mtime, len(data), mode), io.BytesIO(data))
    return buf.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    """Gzip with a zero header timestamp and no file name."""
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9) as gz:
        gz.write(data)
    return out.getvalue()


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and rename."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def build(version: str, out_dir: str | Path = DEFAULT_OUT) -> Path:
    """Build ``ledger-<version>.tar.gz`` (+ ``.sha256``) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    mtime = int(os.environ.get("SOURCE_DATE_EPOCH", DEFAULT_EPOCH))
    archive = gzip_bytes(tar_bytes(version, release_tree(version), mtime))
    target = out / f"ledger-{version}.tar.gz"
    write_atomic(target, archive)
    digest = hashlib.sha256(archive).hexdigest()
    write_atomic(target.with_name(target.name + ".sha256"), f"{digest}  {target.name}\n".encode())
    return target


def build_all(out_dir: str | Path = DEFAULT_OUT, versions: list[str] | None = None) -> list[Path]:
    """Build the given versions (default: all); return the tarball paths."""
    return [build(v, out_dir) for v in (versions or list_versions())]


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="output directory")
    parser.add_argument(
        "--version",
        action="append",
        dest="versions",
        metavar="X",
        help="version to build (repeatable; default: all)",
    )
    parser.add_argument("--list", action="store_true", help="list versions and exit")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(list_versions()))
        return 0
    try:
        paths = build_all(args.out, args.versions)
    except ValueError as exc:
        print(f"build.py: {exc}", file=sys.stderr)
        return 2
    for path in paths:
        digest = path.with_name(path.name + ".sha256").read_text().split()[0]
        print(f"{digest}  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
