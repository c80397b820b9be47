"""Extract a tar archive that came from a host without trusting its member names.

Python 3.11.0 to 3.11.3 (Debian 12 ships 3.11.2) have no ``extractall(filter=...)``, so
relctl does not rely on it: every member is checked before anything is written, and only
what a bundle may hold is written (regular files and folders, under ``dest``), through
file descriptors that never follow a link.

    UnsafeArchiveError  a member is absolute, climbs out with ``..``, is a link, a device,
                        a FIFO, or names the same path twice: nothing was written
"""

from __future__ import annotations

import contextlib
import os
import tarfile
from pathlib import Path, PurePosixPath

CHUNK = 1 << 20


class UnsafeArchiveError(ValueError):
    """A member of the archive would land outside the folder or is not a plain file."""


def member_parts(name: str) -> tuple[str, ...]:
    """The path components of a member name, refused when it could leave the folder."""
    path = PurePosixPath(name)
    if path.is_absolute() or "\\" in name or "\x00" in name:
        raise UnsafeArchiveError(f"member {name!r} is not a relative path")
    parts = tuple(p for p in path.parts if p not in ("", "."))
    if not parts or ".." in parts:
        raise UnsafeArchiveError(f"member {name!r} leaves the folder")
    return parts


def check_members(members: list[tarfile.TarInfo]) -> list[tuple[tuple[str, ...], tarfile.TarInfo]]:
    """Every member checked (relative, inside, a file or a folder, named once)."""
    seen: set[tuple[str, ...]] = set()
    checked = []
    for member in members:
        parts = member_parts(member.name)
        if not (member.isfile() or member.isdir()):
            raise UnsafeArchiveError(f"member {member.name!r} is not a regular file or folder")
        if parts in seen:
            raise UnsafeArchiveError(f"member {member.name!r} appears twice")
        seen.add(parts)
        checked.append((parts, member))
    return checked


def safe_extract(archive: Path, dest: Path) -> None:
    """Extract ``archive`` into ``dest`` (created 0700 if missing) after checking every
    member; files are written 0600, folders 0700, whatever the archive says."""
    dest.mkdir(parents=True, exist_ok=True, mode=0o700)
    with tarfile.open(archive) as tar:
        checked = check_members(tar.getmembers())
        root = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            for parts, member in checked:
                _write(tar, member, parts, root)
        finally:
            os.close(root)


def _write(tar: tarfile.TarFile, member: tarfile.TarInfo, parts: tuple[str, ...],
           root: int) -> None:
    folder = _folder(root, parts[:-1] if member.isfile() else parts)
    try:
        if member.isdir():
            return
        source = tar.extractfile(member)
        if source is None:
            raise UnsafeArchiveError(f"member {member.name!r} has no content")
        fd = _create(parts[-1], folder)
        with os.fdopen(fd, "wb") as out:
            for block in iter(lambda: source.read(CHUNK), b""):
                out.write(block)
    finally:
        if folder != root:
            os.close(folder)


def _create(name: str, folder: int) -> int:
    """A new file ``name`` in ``folder``; one left by an earlier extraction (or a link
    planted there) is unlinked first, never written through."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    try:
        return os.open(name, flags, 0o600, dir_fd=folder)
    except FileExistsError:
        os.unlink(name, dir_fd=folder)
        return os.open(name, flags, 0o600, dir_fd=folder)


def _folder(root: int, parts: tuple[str, ...]) -> int:
    """A descriptor of ``root/parts``, each folder created or opened without following
    a link."""
    current = root
    for part in parts:
        with contextlib.suppress(FileExistsError):
            os.mkdir(part, 0o700, dir_fd=current)
        try:
            nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=current)
        finally:
            if current != root:
                os.close(current)
        current = nxt
    return current
