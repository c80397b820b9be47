"""Database schema 2: accounts in their own table, a currency per transaction."""

from __future__ import annotations

import sqlite3

SCHEMA = 2

ACCOUNTS_DDL = """CREATE TABLE accounts (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
)"""

TX_DDL = """CREATE TABLE {name} (
    id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts (id),
    amount_cents INTEGER NOT NULL,
    currency TEXT NOT NULL DEFAULT 'EUR',
    created_at TEXT NOT NULL
)"""

INDEX_DDL = "CREATE INDEX tx_account_id ON tx (account_id)"


def create(conn: sqlite3.Connection) -> None:
    """Create schema 2 in an empty database (caller holds a transaction)."""
    conn.execute(ACCOUNTS_DDL)
    conn.execute(TX_DDL.format(name="tx"))
    conn.execute(INDEX_DDL)
    conn.execute(f"PRAGMA user_version = {SCHEMA}")
