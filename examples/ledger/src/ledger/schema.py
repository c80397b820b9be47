"""Database schema 1: transactions carry the account name inline."""

from __future__ import annotations

import sqlite3

SCHEMA = 1

DDL = (
    """CREATE TABLE tx (
        id INTEGER PRIMARY KEY,
        account TEXT NOT NULL,
        amount_cents INTEGER NOT NULL,
        created_at TEXT NOT NULL
    )""",
    "CREATE INDEX tx_account ON tx (account)",
)


def create(conn: sqlite3.Connection) -> None:
    """Create schema 1 in an empty database (caller holds a transaction)."""
    for statement in DDL:
        conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {SCHEMA}")
