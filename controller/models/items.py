"""The configuration items of a release manifest, told apart by ``kind``.

Each is snapshotted on every target before the apply and restored on a rollback by
relctl's agent (``controller/agent/snapshot_agent.py``).
"""

from __future__ import annotations

from typing import Annotated, Literal, TypeVar

from pydantic import Field, model_validator

from controller.models.base import (
    Command,
    ExistingFile,
    Flag,
    ItemName,
    RemotePath,
    Version,
    _Model,
)


class _Item(_Model):
    name: ItemName = Field(description="Unique name of the item within the manifest.")


class FileItem(_Item):
    """One file on every target host (content snapshotted and restored byte for byte)."""

    kind: Literal["file"] = Field(description="Item kind: a single file.")
    path: RemotePath = Field(description="Absolute path of the file on the host.")


class DirectoryItem(_Item):
    """A directory tree on every target host."""

    kind: Literal["directory"] = Field(description="Item kind: a directory tree.")
    path: RemotePath = Field(description="Absolute path of the directory on the host.")


class ArtifactItem(_Item):
    """A Capistrano-style release: ``root/releases/<version>`` and a ``root/current`` link."""

    kind: Literal["artifact"] = Field(description="Item kind: a release directory + symlink.")
    root: RemotePath = Field(description="Folder holding releases/<version> and current.")
    source: ExistingFile = Field(description="Release tarball on the controller (must exist).")

    @property
    def current_link(self) -> str:
        """The ``current`` symlink on the host."""
        return f"{self.root}/current"

    def release_dir(self, version: str) -> str:
        """Where ``version`` is unpacked on the host."""
        return f"{self.root}/releases/{version}"


class PackageItem(_Item):
    """A package pinned to a version on every target host."""

    kind: Literal["package"] = Field(description="Item kind: an OS or Python package.")
    version: Version = Field(description="Exact version to install.")
    manager: Literal["pip", "apt"] = Field(description="Package manager: pip or apt.")
    venv: RemotePath | None = Field(
        None, description="Virtualenv on the host (required for pip, not allowed for apt)."
    )

    @model_validator(mode="after")
    def _venv_matches_manager(self) -> PackageItem:
        if self.manager == "pip" and self.venv is None:
            raise ValueError("a pip package needs 'venv' (system-wide pip is not managed)")
        if self.manager == "apt" and self.venv is not None:
            raise ValueError("'venv' only applies to pip packages")
        return self


class ServiceItem(_Item):
    """A service controlled by shell commands on the host."""

    kind: Literal["service"] = Field(description="Item kind: a running service.")
    start: Command = Field(description="Command that starts the service.")
    stop: Command = Field(description="Command that stops the service.")
    check: Command | None = Field(
        None, description="Command that exits 0 when the service runs and is healthy."
    )


class DataItem(_Item):
    """Application data, e.g. a SQLite database, snapshotted consistently."""

    kind: Literal["data"] = Field(description="Item kind: application data.")
    path: RemotePath = Field(description="Absolute path of the data on the host.")
    engine: Literal["sqlite"] = Field(
        "sqlite", description="Data engine; sqlite is snapshotted with its online backup API."
    )
    conversion: ExistingFile | None = Field(
        None, description="Playbook that converts the data for this release (must exist)."
    )
    reversible: Flag = Field(
        True, description="false: once converted, rolling back cannot restore the old data."
    )


ConfigItem = Annotated[
    FileItem | DirectoryItem | ArtifactItem | PackageItem | ServiceItem | DataItem,
    Field(discriminator="kind"),
]
"""Any configuration item, told apart by ``kind``."""

ItemT = TypeVar("ItemT", FileItem, DirectoryItem, ArtifactItem, PackageItem, ServiceItem,
                DataItem)
