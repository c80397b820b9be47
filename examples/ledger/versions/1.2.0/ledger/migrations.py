"""Schema conversions shipped with this release: 1 -> 2."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from . import schema

Step = Callable[[sqlite3.Connection], str]


def totals(conn: sqlite3.Connection) -> tuple[int, int, int]:
    """Row count, amount sum and id checksum of the tx table."""
    row = conn.execute(
        "SELECT count(*), coalesce(sum(amount_cents), 0), coalesce(sum(id), 0) FROM tx"
    ).fetchone()
    return int(row[0]), int(row[1]), int(row[2])


def schema_1_to_2(conn: sqlite3.Connection) -> str:
    """Move account names into ``accounts``; keep every tx id and amount."""
    before = totals(conn)
    conn.execute(schema.ACCOUNTS_DDL)
    conn.execute("INSERT INTO accounts (name) SELECT DISTINCT account FROM tx ORDER BY account")
    conn.execute(schema.TX_DDL.format(name="tx_new"))
    conn.execute(
        """INSERT INTO tx_new (id, account_id, amount_cents, currency, created_at)
           SELECT t.id, a.id, t.amount_cents, 'EUR', t.created_at
           FROM tx AS t JOIN accounts AS a ON a.name = t.account
           ORDER BY t.id"""
    )
    conn.execute("DROP TABLE tx")
    conn.execute("ALTER TABLE tx_new RENAME TO tx")
    if hasattr(conn, "reset_ids"):  # PostgreSQL mode: copied ids are never handed out again
        conn.reset_ids("tx")
    conn.execute(schema.INDEX_DDL)
    after = totals(conn)
    if after != before:
        raise RuntimeError(f"conversion check failed: before {before}, after {after}")
    accounts = conn.execute("SELECT count(*) FROM accounts").fetchone()[0]
    return f"{before[0]} transactions, {accounts} accounts converted"


# Maps a schema version to the step converting it to version + 1.
STEPS: dict[int, Step] = {1: schema_1_to_2}
