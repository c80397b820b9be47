"""Release version, read from the VERSION file at the release root."""

from __future__ import annotations

from pathlib import Path

RELEASE_ROOT = Path(__file__).resolve().parent.parent


def read_version() -> str:
    """Return the version string of the release this code belongs to."""
    try:
        return (RELEASE_ROOT / "VERSION").read_text(encoding="utf-8").strip()
    except OSError:
        return "0.0.0+unknown"


VERSION = read_version()
