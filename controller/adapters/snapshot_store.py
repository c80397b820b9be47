"""The controller's snapshot store: objects named by their sha256, each stored once.

    STATE_DIR/snapshots/objects/<first two hex digits>/<sha256>

Every host and every release shares it: ten hosts running the same release tree add its
files once, and a release that changes two files adds two. An object is written under a
temporary name and renamed once its content matches its name, so the store never holds
an object whose bytes do not hash to its name. Objects are 0600 in 0700 folders: they
are config files and database dumps, passwords included.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from controller.agent.snapshot_agent import sha256_file
from controller.paths import PRIVATE_DIR_MODE, PRIVATE_FILE_MODE


class ObjectMismatchError(ValueError):
    """Bytes offered under a name they do not hash to."""


class ObjectStore:
    """Content-addressed objects under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, sha: str) -> Path:
        return self.root / sha[:2] / sha

    def has(self, sha: str) -> bool:
        return self.path(sha).is_file()

    def put(self, sha: str, data: bytes) -> None:
        """Store ``data`` as ``sha``; ``ObjectMismatchError`` when it does not hash to it."""
        if hashlib.sha256(data).hexdigest() != sha:
            raise ObjectMismatchError(f"object {sha[:12]} does not match its sha256")
        if self.has(sha):
            os.utime(self.path(sha))  # in use again: the grace of drop_except starts anew
            return
        path = self.path(sha)
        handle, partial = self._partial(path)
        try:
            with os.fdopen(handle, "wb") as stream:
                stream.write(data)
            os.replace(partial, path)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise

    def put_file(self, source: Path) -> str:
        """Move the file ``source`` into the store under its sha256 (read once, in
        blocks: a database dump may be large); its name."""
        sha = sha256_file(source)
        path = self.path(sha)
        if self.has(sha):
            os.utime(path)
            source.unlink()
            return sha
        handle, partial = self._partial(path)
        os.close(handle)
        try:
            shutil.move(source, partial)
            os.chmod(partial, PRIVATE_FILE_MODE)  # a moved file keeps its mode
            os.replace(partial, path)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise
        return sha

    def _partial(self, path: Path) -> tuple[int, str]:
        """A new private file beside ``path`` (0600, an unpredictable name, created
        exclusively) in private folders: objects are config files with passwords."""
        for folder in (self.root, path.parent):
            folder.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
        return tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)

    def put_b64(self, objects: dict[str, str]) -> None:
        """Store objects as the agent sends them (sha -> base64)."""
        for sha, data in objects.items():
            self.put(sha, base64.b64decode(data))

    def claim(self, shas: Iterable[str]) -> set[str]:
        """Mark objects as in use again (the grace of ``drop_except`` starts anew); the
        names of those the store lacks."""
        missing = set()
        for sha in shas:
            if self.has(sha):
                os.utime(self.path(sha))
            else:
                missing.add(sha)
        return missing

    def read(self, sha: str) -> bytes:
        return self.path(sha).read_bytes()

    def b64(self, shas: Iterable[str]) -> dict[str, str]:
        """Objects as the agent reads them (sha -> base64)."""
        return {sha: base64.b64encode(self.read(sha)).decode() for sha in sorted(shas)}

    def members(self, sha: str) -> list[list[Any]]:
        """A tree's member list (an object written by the agent)."""
        data: list[list[Any]] = json.loads(self.read(sha))
        return data

    def intact(self, sha: str) -> bool:
        """The object is there and its bytes hash to its name."""
        return self.has(sha) and sha256_file(self.path(sha)) == sha

    def names(self) -> set[str]:
        if not self.root.is_dir():
            return set()
        return {p.name for p in self.root.glob("??/*") if not p.name.startswith(".")}

    def drop_except(self, needed: set[str], grace_s: float = 600.0) -> int:
        """Delete every object not in ``needed`` and older than ``grace_s`` (a release of
        another service may have stored it and not journaled it yet); the bytes freed."""
        freed = 0
        horizon = time.time() - grace_s
        for sha in self.names() - needed:
            path = self.path(sha)
            st = path.stat()
            if st.st_mtime <= horizon:
                freed += st.st_size
                path.unlink()
        return freed

    def size(self) -> int:
        """Bytes the objects take."""
        return sum(self.path(sha).stat().st_size for sha in self.names())
