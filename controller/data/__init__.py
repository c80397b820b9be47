"""Data engines: how relctl snapshots, restores and verifies a data item of each engine.

Two places run an engine's work. An SQLite database is a file on every target: relctl's
agent captures and restores it there, in the same pass as the host's other items
(``controller/agent/snapshot_agent.py``). A PostgreSQL database is one server that every
target shares: the controller captures it once per release, through the engine this
package's ``DATA_ENGINES`` table names.

Callers never branch on an engine's name: ``engine_for(item)`` gives the controller's
engine for an item, or None when the agent takes care of it on the hosts
(``on_controller(item)`` says which, without building the engine).
"""

from __future__ import annotations

from collections.abc import Callable

from controller.data.engine import Capture, DataEngine
from controller.models.items import DataItem


def _postgresql(item: DataItem) -> DataEngine:
    from controller.data.postgresql import PostgresEngine  # noqa: PLC0415 - psycopg when used

    return PostgresEngine(item)


DATA_ENGINES: dict[str, Callable[[DataItem], DataEngine]] = {"postgresql": _postgresql}
"""The engines the controller runs, by the ``engine`` a data item names."""


def on_controller(item: DataItem) -> bool:
    """True when the controller snapshots ``item`` (on its server), not relctl's agent."""
    return item.on_controller


def engine_for(item: DataItem) -> DataEngine | None:
    """The controller's engine for ``item``, or None when relctl's agent snapshots the
    item on every target (a file on each host)."""
    engine = DATA_ENGINES.get(item.engine)
    return engine(item) if engine is not None else None


__all__ = ["DATA_ENGINES", "Capture", "DataEngine", "engine_for", "on_controller"]
