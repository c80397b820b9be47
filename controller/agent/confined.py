"""Confined paths: how the host agent writes without ever leaving an item.

Runs on the host after ``protocol.py`` and before the other agent sources, in the same
namespace (``controller/adapters/host_agent.py``). Stdlib only.

Every write is made through a folder's file descriptor with names that hold no "/": the
kernel resolves nothing but that one name, and O_NOFOLLOW / follow_symlinks=False keep a
link there from being followed. An item's folder is reached from / one name at a time
(``open_folder``): a link on the way is followed only when root placed it. New nodes
get an unpredictable name, created exclusively, their owner and mode set on the open fd
(or on the link itself), then renamed in place (``place_at``). A link a service user
plants in a folder it owns is replaced or refused, never written through.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path

FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_HOPS = 40  # links followed while walking one path (the kernel's own limit)


class RefusedError(Exception):
    """What the agent will not do: write outside an item, follow a planted link, read a
    socket or a device as a file. Nothing of the item was written."""


def open_regular(path: Path | str) -> int:
    """A read fd of the regular file at ``path`` itself: never a link's target, and a FIFO
    is refused at once instead of waiting for a writer."""
    fd = os.open(str(path), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise RefusedError(f"{path} is {file_type(st.st_mode)}, not a regular file")
    return fd


def file_type(mode: int) -> str:
    """What an lstat mode is, for people."""
    for test, name in ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a folder"),
                       (stat.S_ISLNK, "a symlink"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "an unknown kind of file"


def leaf_name(path: Path | str) -> str:
    name = os.path.basename(str(path).rstrip("/"))
    if name in ("", ".", ".."):
        raise RefusedError(f"{path} names no file of its own")
    return name


def open_folder(path: str, create: bool = False) -> int:
    """An fd of the folder at the absolute ``path``, walked from / one name at a time. A
    link on the way is followed only when root owns it and the folder holding it, which no
    other user can write (``/var/run -> /run``): never one a service user planted.
    ``create``: missing folders are made (0755, root's)."""
    return walk_folder(os.open("/", FOLDER_FLAGS), path, create, MAX_HOPS)


def walk_folder(fd: int, path: str, create: bool, hops: int) -> int:
    """``open_folder`` from the folder ``fd`` (closed here) along ``path``."""
    if path.startswith("/"):
        os.close(fd)
        fd = os.open("/", FOLDER_FLAGS)
    try:
        for name in (n for n in path.split("/") if n not in ("", ".")):
            step = step_into(fd, name, create, hops)
            os.close(fd)
            fd = step
    except BaseException:
        os.close(fd)
        raise
    return fd


def step_into(fd: int, name: str, create: bool, hops: int) -> int:
    try:
        return os.open(name, FOLDER_FLAGS, dir_fd=fd)
    except FileNotFoundError:
        if not create:
            raise
        os.mkdir(name, 0o755, dir_fd=fd)
        return os.open(name, FOLDER_FLAGS, dir_fd=fd)
    except OSError as error:
        if error.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
    if not stat.S_ISLNK(st.st_mode):
        raise RefusedError(f"{name} is {file_type(st.st_mode)}, not a folder")
    if hops <= 0 or not trusted_link(fd, st):
        raise RefusedError(f"{name} -> {os.readlink(name, dir_fd=fd)} is a link root did not "
                           "place (owned by another user, or in a folder others can write): "
                           "not followed")
    return walk_folder(os.dup(fd), os.readlink(name, dir_fd=fd), create, hops - 1)


def trusted_link(folder: int, link: os.stat_result) -> bool:
    """Only root could have put this link here: root owns it and its folder, which
    others cannot write to (or only with the sticky bit, which keeps others' names)."""
    st = os.fstat(folder)
    shared = st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX
    return link.st_uid == 0 and st.st_uid == 0 and not shared


def descend(fd: int, names: list[str], create_mode: int | None = None) -> int:
    """A new fd of the folder ``names`` below ``fd``, no link followed at all; missing
    folders are made with ``create_mode`` when given."""
    here = os.dup(fd)
    try:
        for name in names:
            try:
                step = os.open(name, FOLDER_FLAGS, dir_fd=here)
            except FileNotFoundError:
                if create_mode is None:
                    raise
                os.mkdir(name, create_mode, dir_fd=here)
                step = os.open(name, FOLDER_FLAGS, dir_fd=here)
            os.close(here)
            here = step
    except BaseException:
        os.close(here)
        raise
    return here


def remove_at(fd: int, name: str) -> None:
    """Remove ``name`` in the folder ``fd`` (a folder: everything in it); a link is
    removed, never followed."""
    try:
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=fd)
        return
    inner = os.open(name, FOLDER_FLAGS, dir_fd=fd)
    try:
        for child in os.listdir(inner):
            remove_at(inner, child)
    finally:
        os.close(inner)
    os.rmdir(name, dir_fd=fd)


def place_at(fd: int, name: str, make: Callable[[int, str], None]) -> None:
    """Put a new node at ``name`` in the folder ``fd``: ``make(fd, temporary)`` creates it
    under an unpredictable name (exclusively), then it is renamed over what was there."""
    temporary = f".relctl-{secrets.token_hex(12)}"
    try:
        make(fd, temporary)
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                remove_at(fd, name)
        except FileNotFoundError:
            pass
        os.replace(temporary, name, src_dir_fd=fd, dst_dir_fd=fd)
    except BaseException:
        with contextlib.suppress(OSError):
            remove_at(fd, temporary)
        raise


def file_maker(source: Path, mode: int, uid: int, gid: int,
               mtime: float | None = None) -> Callable[[int, str], None]:
    """Makes a regular file with ``source``'s bytes: created exclusively, never through a
    link; owner, mode and time set on its fd."""
    def make(fd: int, name: str) -> None:
        out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                      | os.O_CLOEXEC, 0o600, dir_fd=fd)
        with os.fdopen(out, "wb") as handle, source.open("rb") as src:
            for block in iter(lambda: src.read(1 << 20), b""):
                handle.write(block)
            handle.flush()
            os.fchown(out, uid, gid)
            os.fchmod(out, mode & 0o7777)
            if mtime is not None:
                os.utime(out, (mtime, mtime))
    return make


def link_maker(target: str, uid: int | None = None,
               gid: int | None = None) -> Callable[[int, str], None]:
    """Makes a symlink to ``target`` (owned by ``uid``:``gid`` when given)."""
    def make(fd: int, name: str) -> None:
        os.symlink(target, name, dir_fd=fd)
        if uid is not None and gid is not None:
            if not stat.S_ISLNK(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode):
                raise RefusedError(f"{name} was replaced while it was made")
            os.chown(name, uid, gid, dir_fd=fd, follow_symlinks=False)
    return make


def fifo_maker(mode: int, uid: int, gid: int) -> Callable[[int, str], None]:
    """Makes a FIFO; owner and mode set on its fd (opened without waiting for a writer)."""
    def make(fd: int, name: str) -> None:
        os.mkfifo(name, 0o600, dir_fd=fd)
        node = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC,
                       dir_fd=fd)
        try:
            if not stat.S_ISFIFO(os.fstat(node).st_mode):
                raise RefusedError(f"{name} was replaced while it was made")
            os.fchown(node, uid, gid)
            os.fchmod(node, mode & 0o7777)
        finally:
            os.close(node)
    return make


def in_folder(path: Path, act: Callable[[int, str], None]) -> None:
    """``act(folder_fd, name)`` on ``path``'s folder (made when missing, ``open_folder``)."""
    folder = open_folder(str(path.parent), create=True)
    try:
        act(folder, leaf_name(path))
    finally:
        os.close(folder)


def remove_link(root: str, name: str) -> None:
    try:
        folder = open_folder(root)
    except FileNotFoundError:
        return
    try:
        os.unlink(name, dir_fd=folder)
    except FileNotFoundError:
        pass
    finally:
        os.close(folder)


def set_owner(path: Path, uid: int, gid: int, mode: int) -> None:
    """Owner and mode of the file ``path`` names itself, set on its fd (never a link's)."""
    fd = open_regular(path)
    try:
        os.fchown(fd, uid, gid)
        os.fchmod(fd, mode & 0o7777)
    finally:
        os.close(fd)
