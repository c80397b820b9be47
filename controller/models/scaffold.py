"""What ``relctl init`` is asked to write for one existing service, validated once.

The request carries the service's facts as an operator gives them on the command line:
its name and port, the deploy playbook, the paths a release changes on each host (code,
config files, folders, SQLite data), the PostgreSQL databases the hosts share, and the
commands that start, stop and check it.
Controller paths (playbooks, a release tarball, an inventory) are absolute here: the CLI
resolves them against the current directory before it builds the request.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, Field, field_validator, model_validator

from controller.models.base import SLUG_PATTERN, Command, JsonPointerText, RemotePath, _Model

VERSION_PATTERN = r"[0-9A-Za-z][0-9A-Za-z._+-]*"


def _matching(pattern: str, wanted: str) -> Callable[[str], str]:
    """A check that ``value`` matches ``pattern``, saying what was ``wanted`` otherwise."""
    def check(value: str) -> str:
        if not re.fullmatch(pattern, value):
            raise ValueError(f"{value!r} is not {wanted}")
        return value
    return check


UrlPath = Annotated[str, AfterValidator(_matching(r"/\S*", "a URL path such as /health"))]
Version = Annotated[str, Field(max_length=100), AfterValidator(
    _matching(VERSION_PATTERN, "a version such as 1.4.0"))]


def _port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise ValueError(f"{value} is not a port (1-65535)")
    return value


Port = Annotated[int, AfterValidator(_port)]
Url = Annotated[str, AfterValidator(
    _matching(r"https?://\S+", "an http(s) URL such as http://lb.example.com:8000"))]
# A PostgreSQL database as libpq names it, without a password (that stays in a variable).
PG_URL = (r"postgresql://(?P<user>[A-Za-z_][A-Za-z0-9_$-]*)@(?P<host>[A-Za-z0-9][A-Za-z0-9.-]*)"
          r"(?::(?P<port>[0-9]{1,5}))?/(?P<database>[A-Za-z_][A-Za-z0-9_$-]*)")
PgUrl = Annotated[str, AfterValidator(_matching(
    PG_URL, "postgresql://USER@HOST[:PORT]/DATABASE (no password: relctl reads it from an "
    "environment variable)"))]


class ScaffoldRequest(_Model):
    """One service to scaffold a release manifest, continuity plan and gates for."""

    service: str = Field(description="Service name (a slug): files, items and LB backend.")
    port: Port = Field(description="Port the service answers on each host.")
    playbooks: tuple[Path, ...] = Field(min_length=1, description="Deploy playbooks.")
    version: Version = Field("1.0.0", description="Version the starter manifest releases.")
    environment: str = Field("lab", description="Environment: lock and sign-off scope.")
    targets: str = Field("app_primary", min_length=1, description="Primary site group.")
    backup_group: str = Field("app_backup", min_length=1, description="Backup site group.")
    artifact_root: RemotePath | None = Field(None, description="Where the code lives.")
    artifact: Path | None = Field(None, description="Release tarball on the controller.")
    configs: tuple[RemotePath, ...] = Field((), description="Config files on the hosts.")
    dirs: tuple[RemotePath, ...] = Field((), description="Folders on the hosts.")
    data: tuple[RemotePath, ...] = Field((), description="SQLite databases on the hosts.")
    postgresql: tuple[PgUrl, ...] = Field((), description="PostgreSQL databases the hosts "
                                                          "share (snapshotted by the controller).")
    start: Command | None = Field(None, description="Command that starts the service.")
    stop: Command | None = Field(None, description="Command that stops the service.")
    check: Command | None = Field(None, description="Command that exits 0 when healthy.")
    health_path: UrlPath = Field("/health", description="Health URL path.")
    version_path: UrlPath | None = Field("/version", description="Version URL path, if any.")
    version_pointer: JsonPointerText = Field(
        "/version", description="JSON pointer to the version in that answer.")
    lb_port: Port = Field(8000, description="Load balancer frontend port.")
    lb_url: Url | None = Field(None, description="Load test URL, if not the lab's.")
    inventory: Path | None = Field(None, description="Ansible inventory, if not the lab's.")
    owner: str = Field("release manager", min_length=1, description="Release manager.")

    @field_validator("service", "environment")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not re.fullmatch(SLUG_PATTERN, value) or len(value) > 100:
            raise ValueError(f"{value!r} is not a slug: use lowercase letters, digits, '.', "
                             "'_' and '-', starting with a letter or digit (e.g. billing)")
        return value

    @model_validator(mode="after")
    def _coherent(self) -> ScaffoldRequest:
        if (self.start is None) != (self.stop is None):
            raise ValueError("--start and --stop go together: relctl stops the service "
                             "before a restore and starts it after")
        if self.artifact is not None and self.artifact_root is None:
            raise ValueError("--artifact needs --artifact-root (where releases/<version> "
                             "and current live on each host)")
        if self.targets == self.backup_group:
            raise ValueError(f"--targets and --backup-group are both {self.targets!r}: the "
                             "backup site must be another group")
        if not self.remote_paths and self.start is None and not self.postgresql:
            raise ValueError("nothing to protect: give at least one of --artifact-root, "
                             "--config, --dir, --data, --postgresql or --start/--stop")
        repeated = sorted({p for p in self.remote_paths if self.remote_paths.count(p) > 1})
        if repeated:
            raise ValueError(f"{', '.join(repeated)} given more than once (one item per path)")
        return self

    @property
    def remote_paths(self) -> list[str]:
        """Every path on the hosts the release protects."""
        root = [self.artifact_root] if self.artifact_root else []
        return [*root, *self.configs, *self.dirs, *self.data]


__all__ = ["ScaffoldRequest"]
