"""The configuration items of a release manifest, told apart by ``kind``.

Each is snapshotted on every target before the apply and restored on a rollback by
relctl's agent (``controller/agent/snapshot_agent.py``).
"""

from __future__ import annotations

from typing import Annotated, Literal, TypeVar

from pydantic import Field, model_validator

from controller.models.base import (
    Command,
    DbName,
    EnvName,
    ExistingFile,
    Flag,
    HostName,
    Int,
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


class PostgresDatabase(_Model):
    """Where a PostgreSQL database lives and how relctl logs in to it. The password comes
    from an environment variable or a file on the controller: never from the manifest,
    and it never reaches the journal, logs or reports."""

    host: HostName = Field(description="Server address or name, as the controller reaches it.")
    port: Int = Field(5432, ge=1, le=65535, description="Server port.")
    database: DbName = Field(description="Database name.")
    user: DbName = Field(description="Role relctl logs in as (owner of the database's "
                                     "objects, so that a restore can drop and recreate them).")
    password_env: EnvName | None = Field(
        None, description="Environment variable on the controller that holds the password.")
    password_file: ExistingFile | None = Field(
        None, description="File on the controller whose first line is the password.")

    @model_validator(mode="after")
    def _one_password_source(self) -> PostgresDatabase:
        if self.password_env and self.password_file:
            raise ValueError("give password_env or password_file, not both")
        return self

    @property
    def address(self) -> str:
        """The database without its secret, for people: ``postgresql://user@host:port/db``."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.database}"


CONTROLLER_ENGINES = ("postgresql",)
"""Data engines the controller runs (``controller/data/``), not the host agent."""


class DataItem(_Item):
    """Application data: a SQLite database on every target (snapshotted there with its
    online backup API), or a PostgreSQL database (snapshotted once by the controller)."""

    kind: Literal["data"] = Field(description="Item kind: application data.")
    engine: Literal["sqlite", "postgresql"] = Field(
        "sqlite", description="Data engine: sqlite (a file on each target) or postgresql "
                              "(one database, reached from the controller).")
    path: RemotePath | None = Field(
        None, description="sqlite: absolute path of the database on each target.")
    postgresql: PostgresDatabase | None = Field(
        None, description="postgresql: the server, database and role.")
    conversion: ExistingFile | None = Field(
        None, description="Playbook that converts the data for this release (must exist)."
    )
    reversible: Flag = Field(
        True, description="false: once converted, rolling back cannot restore the old data."
    )
    on_rollback: Literal["keep", "restore", "discard"] | None = Field(
        None, description="What a rollback does with the data. Unset: keep it live when "
        "the schema is the snapshot's (no migration ran), else restore the snapshot and "
        "carry every row written since into it. keep: never restore. restore: restore and "
        "carry forward. discard: restore and drop what was written since (listed in the "
        "catch-up report).")
    rollback_rows: dict[str, str | None] | None = Field(
        None, description="How rows written under the new schema read in the old one, for "
        "the rollback's carry-forward: old table -> one SELECT over the new schema giving "
        "that table's rows in its old columns (run read-only on the live database); a table "
        "only the new schema has, mapped to null, is derived data (counted, not listed). "
        "postgresql: tables as `name` (schema public) or `schema.name`; an old table mapped "
        "to null keeps the snapshot's rows (a schema version, a cache), as a migration "
        "tool's own table (alembic_version, django_migrations, flyway_schema_history, ...) "
        "does unless mapped to a query. Unnamed tables are carried by column name.")

    @property
    def on_controller(self) -> bool:
        """True when the controller snapshots the item on its server (an engine in
        ``CONTROLLER_ENGINES``), not relctl's agent on every target."""
        return self.engine in CONTROLLER_ENGINES

    @property
    def location(self) -> str:
        """Where the data lives, for people (never with a password)."""
        return self.postgresql.address if self.postgresql is not None else str(self.path)

    @model_validator(mode="after")
    def _fields_of_engine(self) -> DataItem:
        if self.engine == "sqlite" and (self.path is None or self.postgresql is not None):
            raise ValueError("a sqlite data item needs 'path' (and no 'postgresql')")
        if self.engine == "postgresql" and (self.postgresql is None or self.path is not None):
            raise ValueError("a postgresql data item needs a 'postgresql' block (host, "
                             "database, user, password_env or password_file) and no 'path'")
        return self


ConfigItem = Annotated[
    FileItem | DirectoryItem | ArtifactItem | PackageItem | ServiceItem | DataItem,
    Field(discriminator="kind"),
]
"""Any configuration item, told apart by ``kind``."""

ItemT = TypeVar("ItemT", FileItem, DirectoryItem, ArtifactItem, PackageItem, ServiceItem,
                DataItem)
