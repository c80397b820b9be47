"""``ledger-migrate``: bring the database to the schema this release expects.

Idempotent: a database already at the expected schema is left alone, an absent
one is left for the server to create.  Every conversion runs in a single
transaction after a backup copy of the database has been written.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from pathlib import Path

from . import config, db, migrations, schema

EXIT_FAILED = 1
EXIT_DOWNGRADE = 3


def plan(current: int | None) -> str:
    """What to do with a database at ``current``: create/none/migrate/downgrade."""
    if current is None:
        return "create"
    if current == schema.SCHEMA:
        return "none"
    return "migrate" if current < schema.SCHEMA else "downgrade"


def backup(path: Path | str, current: int) -> Path:
    """Copy the database with SQLite's online backup API; return the copy."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = Path(path)
    target = path.with_name(f"{path.name}.schema{current}-{stamp}.bak")
    src = db.connect(path)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()
    return target


def run_step(path: Path | str, current: int) -> str:
    """Convert the database from ``current`` to ``current + 1`` atomically."""
    step = migrations.STEPS.get(current)
    if step is None:
        raise RuntimeError(f"this release has no conversion from schema {current}")
    conn = db.connect(path)
    conn.isolation_level = None  # explicit transaction control below
    try:
        conn.execute("BEGIN IMMEDIATE")
        if db.user_version(conn) != current:
            raise RuntimeError("database changed while migrating")
        try:
            summary = step(conn)
            conn.execute(f"PRAGMA user_version = {current + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return summary
    finally:
        conn.close()


def migrate(path: Path | str, make_backup: bool = True) -> int:
    """Apply all steps up to schema.SCHEMA, printing progress."""
    current = db.stored_schema(path)
    action = plan(current)
    if action == "create":
        print(f"no database at {path}; it will be created at schema {schema.SCHEMA}")
        return 0
    assert current is not None
    if action == "none":
        print(f"schema {current} -> {schema.SCHEMA}: already up to date")
        return 0
    if action == "downgrade":
        print(
            f"database {path} is at schema {current}, newer than this release's "
            f"schema {schema.SCHEMA}; downgrades are not supported, database "
            "left untouched (restore a backup instead)",
            file=sys.stderr,
        )
        return EXIT_DOWNGRADE
    if make_backup and db.is_server(path):
        print("no backup copy of a database server: take one with pg_dump first")
    elif make_backup:
        print(f"backup written to {backup(path, current)}")
    start = current
    while current < schema.SCHEMA:
        summary = run_step(path, current)
        print(f"schema {current} -> {current + 1}: {summary}")
        current += 1
    print(f"migrated schema {start} -> {current}")
    return 0


def check(path: Path | str) -> int:
    """Print a JSON report of the database versus this release's schema."""
    current = db.stored_schema(path)
    report = {
        "database": str(path),
        "db_schema": current,
        "code_schema": schema.SCHEMA,
        "action": plan(current),
    }
    print(json.dumps(report, sort_keys=True))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="ledger-migrate", description=__doc__)
    parser.add_argument("--config", default=config.DEFAULT_CONFIG)
    parser.add_argument("--check", action="store_true", help="report only, as JSON")
    parser.add_argument("--no-backup", action="store_true", help="skip the backup copy")
    args = parser.parse_args(argv)
    try:
        cfg = config.load(args.config)
        if args.check:
            return check(cfg.db)
        return migrate(cfg.db, make_backup=not args.no_backup)
    except (config.ConfigError, sqlite3.Error, RuntimeError) as exc:
        print(f"ledger-migrate: {exc}", file=sys.stderr)
        return EXIT_FAILED
