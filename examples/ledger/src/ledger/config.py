"""Configuration file handling (INI, section [ledger])."""

from __future__ import annotations

import configparser
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CONFIG = "/etc/ledger/ledger.conf"
DEFAULTS = {
    "bind": "127.0.0.1",
    "port": "8080",
    "db": "/var/lib/ledger/ledger.db",
    "log": "/var/log/ledger/ledger.log",
    "pidfile": "/run/ledger/ledger.pid",
}


class ConfigError(RuntimeError):
    """The configuration file is missing or invalid."""


@dataclass(frozen=True)
class Config:
    """Settings shared by every ledger version."""

    path: Path
    bind: str
    port: int
    db: Path | str  # a SQLite file, or a postgresql:// URL (see db.py)
    log: Path
    pidfile: Path

    @property
    def probe_host(self) -> str:
        """Address a local client should use to reach the server."""
        if self.bind in ("", "0.0.0.0"):
            return "127.0.0.1"
        if self.bind == "::":
            return "[::1]"
        return f"[{self.bind}]" if ":" in self.bind else self.bind


def load(path: str | Path = DEFAULT_CONFIG) -> Config:
    """Read the [ledger] section of ``path``, filling in defaults."""
    parser = configparser.ConfigParser(defaults=DEFAULTS)
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from exc
    except configparser.Error as exc:
        raise ConfigError(f"invalid config {path}: {exc}") from exc
    if not parser.has_section("ledger"):
        raise ConfigError(f"config {path} has no [ledger] section")
    section = parser["ledger"]
    try:
        port = int(section["port"])
    except ValueError as exc:
        raise ConfigError(f"config {path}: port is not an integer") from exc
    return Config(
        path=Path(path),
        bind=section["bind"],
        port=port,
        db=section["db"] if section["db"].startswith("postgresql://") else Path(section["db"]),
        log=Path(section["log"]),
        pidfile=Path(section["pidfile"]),
    )
