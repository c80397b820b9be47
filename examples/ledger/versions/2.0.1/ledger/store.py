"""Transaction storage for schema 2 (accounts table, currency column).

2.0.1 "tidies" the lookup query and selects a column that does not exist
(``t.amount``): every GET /tx/<id> fails with a 500.  The bug is deliberate.
"""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime
from typing import Any

CURRENCY = re.compile(r"^[A-Z]{3}$")
SELECT_TX = """SELECT t.id, a.name AS account, t.amount AS amount_cents, t.currency, t.created_at
    FROM tx AS t JOIN accounts AS a ON a.id = t.account_id
    WHERE t.id = ?"""


def now() -> str:
    """Current UTC time as an ISO-8601 string with milliseconds."""
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def account_id(conn: sqlite3.Connection, name: str) -> int:
    """Id of account ``name``, created on first use."""
    conn.execute("INSERT OR IGNORE INTO accounts (name) VALUES (?)", (name,))
    row = conn.execute("SELECT id FROM accounts WHERE name = ?", (name,)).fetchone()
    return int(row[0])


def insert_tx(
    conn: sqlite3.Connection, account: str, amount_cents: int, extra: dict[str, Any]
) -> dict[str, Any]:
    """Store one transaction (currency defaults to EUR) and return it."""
    currency = extra.get("currency", "EUR")
    if not isinstance(currency, str) or not CURRENCY.match(currency):
        raise ValueError("currency must be a 3-letter ISO code such as EUR")
    created_at = now()
    cur = conn.execute(
        "INSERT INTO tx (account_id, amount_cents, currency, created_at) VALUES (?, ?, ?, ?)",
        (account_id(conn, account), amount_cents, currency, created_at),
    )
    return {
        "id": cur.lastrowid,
        "account": account,
        "amount_cents": amount_cents,
        "currency": currency,
        "created_at": created_at,
    }


def get_tx(conn: sqlite3.Connection, tx_id: int) -> dict[str, Any] | None:
    """Return transaction ``tx_id`` or None."""
    row = conn.execute(SELECT_TX, (tx_id,)).fetchone()
    return dict(row) if row else None
