"""Building blocks of every config model: the strict base, slugs, and paths.

Paths on the controller are written relative to the config file; validated with a
``{"base_dir": ..., "check_files": True}`` context (what ``controller.manifest_loader``
passes) they become absolute and, for the ``Existing*`` kinds, must exist. Validated
without a context they are kept as written, so code and tests can build models freely.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo
from pydantic_core import PydanticCustomError

SLUG_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@+-]*$"

Slug = Annotated[str, Field(pattern=SLUG_PATTERN, max_length=100)]
ItemName = Annotated[str, Field(pattern=NAME_PATTERN, max_length=100)]
Command = Annotated[str, Field(min_length=1)]


def _context(info: ValidationInfo) -> dict[str, Any]:
    return info.context if isinstance(info.context, dict) else {}


def _resolve(value: Path, info: ValidationInfo) -> Path:
    """Make ``value`` absolute against the manifest's folder when the context names it."""
    base = _context(info).get("base_dir")
    return Path(os.path.normpath(Path(base) / value.expanduser())) if base else value


def _resolve_existing(value: Path, info: ValidationInfo) -> Path:
    """Resolve ``value``; when the context asks for it, the file must exist."""
    resolved = _resolve(value, info)
    if _context(info).get("check_files") and not resolved.is_file():
        raise PydanticCustomError(
            "file_not_found", "file not found: {path}", {"path": str(resolved)}
        )
    return resolved


def _resolve_existing_dir(value: Path, info: ValidationInfo) -> Path:
    """Resolve ``value``; when the context asks for it, the folder must exist."""
    resolved = _resolve(value, info)
    if _context(info).get("check_files") and not resolved.is_dir():
        raise PydanticCustomError(
            "dir_not_found", "folder not found: {path}", {"path": str(resolved)}
        )
    return resolved


def _absolute_posix(value: str) -> str:
    """A path on a managed host: absolute, no ``..``."""
    if not value.startswith("/") or ".." in value.split("/"):
        raise PydanticCustomError(
            "remote_path", "must be an absolute path on the host without '..', got {value}",
            {"value": repr(value)},
        )
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
    model_config = ConfigDict(extra="forbid", frozen=True)
