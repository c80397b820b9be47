"""The journal's tests (``tests/unit/test_journal.py``) on PostgreSQL: every test there
that opens a journal (through ``target`` or ``journal``) runs here again, on a new
database of the session's cluster on 127.0.70.1 (``tests/integration/conftest.py``).

No lab: a server, so these run with the integration tests and ``tests/unit`` needs none.
"""

from __future__ import annotations

import inspect

import pytest

from tests.unit import test_journal as on_sqlite
from tests.unit.test_journal import journal  # noqa: F401  (the fixture, on this target)


@pytest.fixture
def target(pg_url: str) -> str:
    """Where a test's journal lives: a new PostgreSQL database."""
    return pg_url


ON_A_JOURNAL = {name: test for name, test in vars(on_sqlite).items()
                if name.startswith("test_") and callable(test)
                and {"target", "journal"} & set(inspect.signature(test).parameters)}
assert len(ON_A_JOURNAL) > 20, "the journal's tests were not found"
globals().update(ON_A_JOURNAL)  # collected by pytest as this module's own
