"""Building blocks of every config model: the strict base, slugs, and paths.

Paths on the controller are written relative to the config file; validated with a
``{"base_dir": ..., "check_files": True}`` context (what ``controller.manifest_loader``
passes) they become absolute and, for the ``Existing*`` kinds, must exist. Validated
without a context they are kept as written, so code and tests can build models freely.
"""

from __future__ import annotations

import os
import re
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationInfo,
)
from pydantic_core import PydanticCustomError

SLUG_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@+-]*$"
VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._+~-]*$"
# What a path on a managed host may hold: it reaches playbooks, the snapshot agent and
# SQLite, so no shell or URI metacharacter (; $ ` | * ? % & # space newline ...) passes.
REMOTE_PATH = re.compile(r"^/[A-Za-z0-9._+@=,:/-]*$")
# An Ansible host pattern (groups, hosts, :&! unions, wildcards); never an option.
HOST_PATTERN = r"^[A-Za-z0-9_*.!][A-Za-z0-9_.*:&!,\[\]-]*$"
MAX_PATH = 4096
MAX_COMPONENT = 255

# HAProxy backend and server names, as its runtime API commands take them.
HAPROXY_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"

Slug = Annotated[str, Field(pattern=SLUG_PATTERN, max_length=100)]
ItemName = Annotated[str, Field(pattern=NAME_PATTERN, max_length=100)]
Version = Annotated[str, Field(pattern=VERSION_PATTERN, max_length=100)]
HostPattern = Annotated[str, Field(pattern=HOST_PATTERN, max_length=1000)]
Command = Annotated[str, Field(min_length=1, max_length=4096)]
# A JSON pointer (RFC 6901): "", or "/"-separated tokens with "~0" and "~1" escapes.
JsonPointerText = Annotated[str, Field(pattern=r"^(/([^~/]|~[01])*)*$", max_length=500)]
# A database or role name, an environment variable's name, a server's address: each
# reaches a command line as one argument, never through a shell.
DbName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_$-]*$", max_length=63)]
EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=255)]
HostName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9.:-]*$", max_length=253)]
Int = Annotated[int, Strict()]
"""An integer written as one: ``true`` or ``8.0`` is refused."""
Number = Annotated[float, Strict()]
"""A number written as one (an integer or a finite float), never a boolean."""
Flag = Annotated[bool, Strict()]
"""``true`` or ``false``, never ``1`` or ``"yes"``."""

EARLIEST_YEAR, LATEST_YEAR = 1971, 9000


def _moment(value: Any) -> Any:
    """A time written as a time: a number of seconds since 1970 is refused."""
    if not isinstance(value, datetime | str):
        raise PydanticCustomError(
            "moment", "a date and time with a UTC offset (2026-12-01T22:00:00+01:00), "
            "got {value}", {"value": repr(value)[:100]})
    return value


def _plausible(value: datetime) -> datetime:
    if not EARLIEST_YEAR <= value.year < LATEST_YEAR:
        raise PydanticCustomError("moment", "a time between {a} and {b}",
                                  {"a": EARLIEST_YEAR, "b": LATEST_YEAR})
    return value


Moment = Annotated[AwareDatetime, BeforeValidator(_moment), AfterValidator(_plausible)]
"""A timezone-aware time between 1971 and 9000, written as a time (not a number)."""


def _context(info: ValidationInfo) -> dict[str, Any]:
    return info.context if isinstance(info.context, dict) else {}


def _resolve(value: Path, info: ValidationInfo) -> Path:
    """Make ``value`` absolute against the manifest's folder when the context names it."""
    _check_length(value)
    base = _context(info).get("base_dir")
    if not base:
        return value
    try:
        expanded = value.expanduser()
    except RuntimeError as error:  # ~nosuchuser
        raise _path_error("cannot expand {path}: {error}", value, error) from None
    resolved = Path(os.path.normpath(Path(base) / expanded))
    _check_length(resolved)
    return resolved


def _check_length(value: Path) -> None:
    if "\0" in str(value):
        raise _path_error("a path cannot hold a NUL character: {path}", value)
    longest = max((len(os.fsencode(part)) for part in value.parts), default=0)
    if longest > MAX_COMPONENT or len(os.fsencode(value)) > MAX_PATH:
        raise _path_error("path too long (a name over 255 bytes, or over 4096 in all): "
                          "{path}", value)


def _path_error(template: str, value: Path, error: object = "") -> PydanticCustomError:
    return PydanticCustomError("controller_path", template,
                               {"path": repr(str(value))[:300], "error": str(error)})


def _is(check: str, path: Path) -> bool:
    """``path.is_file()`` or ``is_dir()``; False when the OS refuses to look."""
    try:
        return bool(getattr(path, check)())
    except (OSError, ValueError):
        return False


def _resolve_existing(value: Path, info: ValidationInfo) -> Path:
    """Resolve ``value``; when the context asks for it, it must be an existing regular file."""
    resolved = _resolve(value, info)
    if _context(info).get("check_files") and not _is("is_file", resolved):
        raise PydanticCustomError(
            "file_not_found", "file not found: {path}", {"path": str(resolved)}
        )
    return resolved


def _resolve_existing_dir(value: Path, info: ValidationInfo) -> Path:
    """Resolve ``value``; when the context asks for it, the folder must exist."""
    resolved = _resolve(value, info)
    if _context(info).get("check_files") and not _is("is_dir", resolved):
        raise PydanticCustomError(
            "dir_not_found", "folder not found: {path}", {"path": str(resolved)}
        )
    return resolved


def _absolute_posix(value: str) -> str:
    """A path on a managed host: absolute, no ``..``, from a safe set of characters."""
    if not value.startswith("/") or ".." in value.split("/"):
        raise PydanticCustomError(
            "remote_path", "must be an absolute path on the host without '..', got {value}",
            {"value": repr(value)[:300]},
        )
    if not REMOTE_PATH.fullmatch(value) or len(value) > MAX_PATH:
        raise PydanticCustomError(
            "remote_path", "a path on the host may hold only letters, digits and . _ + @ = , "
            ": / - (no shell or URI characters), got {value}", {"value": repr(value)[:300]})
    return value.rstrip("/") or "/"


LocalPath = Annotated[Path, AfterValidator(_resolve)]
"""A controller path, resolved against the manifest's folder; need not exist."""
ExistingFile = Annotated[Path, AfterValidator(_resolve_existing)]
"""A controller file, resolved against the manifest's folder; must exist when loaded."""
ExistingDir = Annotated[Path, AfterValidator(_resolve_existing_dir)]
"""A controller folder, resolved against the manifest's folder; must exist when loaded."""
RemotePath = Annotated[str, AfterValidator(_absolute_posix)]
"""An absolute path on a managed host."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
