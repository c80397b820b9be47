"""Build reproducible release tarballs of notes: ``notes-<version>.tar.gz``.

    python3 build.py --out build/artifacts 1.0.0 1.1.0
"""

from __future__ import annotations

import argparse
import gzip
import io
import tarfile
from pathlib import Path

SOURCE = Path(__file__).resolve().parent / "src"


def build(version: str, out_dir: Path) -> Path:
    """Write ``notes-<version>.tar.gz`` (the code and a VERSION file) into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"notes-{version}.tar.gz"
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for path in sorted(SOURCE.iterdir()):
            _add(tar, path.name, path.read_bytes(), 0o755 if path.name == "notesctl" else 0o644)
        _add(tar, "VERSION", f"{version}\n".encode(), 0o644)
    with gzip.GzipFile(target, "wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    return target


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 0
    tar.addfile(info, io.BytesIO(data))


def main() -> None:
    parser = argparse.ArgumentParser(description="Build notes release tarballs.")
    parser.add_argument("--out", type=Path, default=Path("build/artifacts"))
    parser.add_argument("versions", nargs="+")
    args = parser.parse_args()
    for version in args.versions:
        print(build(version, args.out))


if __name__ == "__main__":
    main()
