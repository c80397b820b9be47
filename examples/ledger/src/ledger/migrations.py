"""Schema conversions known to this release: none, schema 1 is the first."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

Step = Callable[[sqlite3.Connection], str]

# Maps a schema version to the step converting it to version + 1.
STEPS: dict[int, Step] = {}
