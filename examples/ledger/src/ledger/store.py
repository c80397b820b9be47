"""Transaction storage for schema 1."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from typing import Any


def now() -> str:
    """Current UTC time as an ISO-8601 string with milliseconds."""
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def insert_tx(
    conn: sqlite3.Connection, account: str, amount_cents: int, extra: dict[str, Any]
) -> dict[str, Any]:
    """Store one transaction and return it as the API shows it."""
    created_at = now()
    cur = conn.execute(
        "INSERT INTO tx (account, amount_cents, created_at) VALUES (?, ?, ?)",
        (account, amount_cents, created_at),
    )
    return {
        "id": cur.lastrowid,
        "account": account,
        "amount_cents": amount_cents,
        "created_at": created_at,
    }


def get_tx(conn: sqlite3.Connection, tx_id: int) -> dict[str, Any] | None:
    """Return transaction ``tx_id`` or None."""
    row = conn.execute(
        "SELECT id, account, amount_cents, created_at FROM tx WHERE id = ?",
        (tx_id,),
    ).fetchone()
    return dict(row) if row else None
