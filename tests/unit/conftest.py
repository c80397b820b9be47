"""Fixtures shared by the unit tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.ledger_support import harness


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every ledger release built and unpacked in a temporary folder."""
    built: dict[str, Path] = harness.prepare_releases(tmp_path_factory.mktemp("ledger"))
    return built
