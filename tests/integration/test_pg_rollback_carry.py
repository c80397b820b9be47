"""A PostgreSQL data item rolled back after a migration keeps every write made since the
snapshot (issue 23, item 1), against a real server of this machine's PostgreSQL 15.

A cluster of this module's own on 127.0.84.1 (a free port): a schema 1 database is
snapshotted by relctl (``ServerData.take``), migrated to schema 2 (a column moved to a new
table, a NOT NULL column added, a check dropped, a table only schema 2 has), written to,
then rolled back as a release's rollback does it (``ServerData.restore``, then
``add_database_reports`` into the rollback phase's record) while a writer keeps writing:
every row written after the snapshot reads back in schema 1, a row schema 1 refuses is
listed with its reason, no acknowledged write is lost, no id is handed out twice, and the
catch-up report lists what the rollback phase records.

No lab: the lab's tests of the PostgreSQL item are in ``test_postgresql_items.py``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from controller.adapters.snapshot_store import ObjectStore
from controller.data import engine_for
from controller.engine.server_data import ServerData, add_database_reports
from controller.journal import Journal
from controller.models.items import DataItem, ServiceItem
from controller.reports.catch_up import summary_lines, write_catch_up
from tests.pg_cluster import PgCluster, missing_binaries, start_cluster

ADDRESS = "127.0.84.1"  # this module's own loopback address
ITEM = "app-db"

SCHEMA_1 = [
    "CREATE TABLE account (id serial PRIMARY KEY, name text NOT NULL UNIQUE)",
    "CREATE TYPE kind AS ENUM ('debit', 'credit')",
    "CREATE TABLE tx (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    " account_id int NOT NULL REFERENCES account (id), cents int NOT NULL CHECK (cents <> 0),"
    " kind kind NOT NULL DEFAULT 'debit', memo text)",
    "CREATE TABLE audit (line text)",  # no primary key: compared as a multiset of rows
    "CREATE TABLE app_schema (one bool PRIMARY KEY, version int NOT NULL)",
    "INSERT INTO app_schema VALUES (true, 1)",
    "CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)",
    "INSERT INTO alembic_version VALUES ('a1')",
    "INSERT INTO account (name) VALUES ('ada'), ('bob')",
    "INSERT INTO tx (account_id, cents, memo) VALUES (1, 100, 'rent'), (2, 250, NULL),"
    " (1, -75, 'refund')",
    "INSERT INTO audit VALUES ('boot'), ('boot')",
]
# Schema 2: memo moves to a table of its own, a NOT NULL currency, no check on cents, a
# table schema 1 lacks, the schema version bumped (the app's, and a migration tool's).
MIGRATION = [
    "CREATE TABLE tx_note (tx_id bigint PRIMARY KEY REFERENCES tx (id) ON DELETE CASCADE,"
    " note text NOT NULL)",
    "INSERT INTO tx_note SELECT id, memo FROM tx WHERE memo IS NOT NULL",
    "ALTER TABLE tx DROP COLUMN memo",
    "ALTER TABLE tx ADD COLUMN currency text NOT NULL DEFAULT 'EUR'",
    "ALTER TABLE tx DROP CONSTRAINT tx_cents_check",
    "CREATE TABLE fx (currency text PRIMARY KEY, rate numeric NOT NULL)",
    "UPDATE app_schema SET version = 2",
    "UPDATE alembic_version SET version_num = 'b2'",
]
# How a schema 2 row reads in schema 1; tx_note and app_schema are derived, not carried
# (alembic_version is, without being named: a migration tool's own table).
ROLLBACK_ROWS: dict[str, str | None] = {
    "tx": "SELECT t.id, t.account_id, t.cents, t.kind, n.note AS memo FROM tx AS t "
          "LEFT JOIN tx_note AS n ON n.tx_id = t.id;",
    "public.tx_note": None,
    "app_schema": None,
}
SERVICE = ServiceItem.model_validate({"kind": "service", "name": "app", "start": "true",
                                      "stop": "true"})


@pytest.fixture(scope="module")
def cluster() -> Iterator[PgCluster]:
    why = missing_binaries()
    if why is not None:
        pytest.skip(f"no PostgreSQL to test with: {why}")
    running = start_cluster(ADDRESS)
    try:
        yield running
    finally:
        running.stop()


class Site:
    """A new database of the cluster in schema 1, the data item relctl sees, and a
    release in a journal of its own whose snapshot holds the database."""

    def __init__(self, cluster: PgCluster, folder: Path, **fields: Any) -> None:
        self.url = cluster.create_database()
        block = {"host": cluster.address, "port": cluster.port,
                 "database": self.url.rsplit("/", 1)[1], "user": "relctl",
                 "password_env": "RELCTL_TEST_PG_PASSWORD"}
        self.item = DataItem.model_validate({"kind": "data", "name": ITEM,
                                             "engine": "postgresql", "postgresql": block,
                                             **fields})
        self.journal = Journal(folder / "journal.sqlite")
        self.release_id = self.journal.start_release(
            name="app-2.0", version="2.0", service="app", environment="test",
            manifest_path=folder / "app-2.0.yml", manifest_sha256="0" * 64)
        self.data = ServerData(self.journal, self.release_id, [self.item],
                               ObjectStore(folder / "objects"), folder / "scratch")
        self.folder = folder

    def sql(self, *statements: str) -> list[tuple[Any, ...]]:
        """Run each statement in its own transaction (acknowledged when it returns); the
        last one's rows."""
        found: list[tuple[Any, ...]] = []
        with psycopg.connect(self.url, autocommit=True) as conn:
            for statement in statements:
                cursor = conn.execute(statement)  # type: ignore[arg-type]
                found = [tuple(r) for r in cursor.fetchall()] if cursor.description else []
        return found

    def roll_back(self) -> dict[str, Any]:
        """What a release's rollback does with the database, and the rollback phase's
        record of it (``data``, ``writes_refused_s``, ``databases``)."""
        phase = self.journal.begin_phase(self.release_id, "rollback")
        detail: dict[str, Any] = {"data": {}, "writes_refused_s": {}}
        started = time.monotonic()
        detail["databases"] = self.data.restore()
        add_database_reports(detail, self.journal, self.release_id,
                             time.monotonic() - started, [SERVICE])
        self.journal.end_phase(phase, "ok", detail, seconds=time.monotonic() - started)
        return detail

    def report(self, detail: dict[str, Any]) -> dict[str, Any]:
        found: dict[str, Any] = detail["data"][self.item.location][ITEM]
        return found


@pytest.fixture
def site(cluster: PgCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
         request: pytest.FixtureRequest) -> Iterator[Site]:
    monkeypatch.setenv("RELCTL_TEST_PG_PASSWORD", cluster.password)
    fields: dict[str, Any] = getattr(request, "param", {})
    made = Site(cluster, tmp_path, **fields)
    try:
        made.sql(*SCHEMA_1)
        yield made
    finally:
        made.journal.close()


class Writer(threading.Thread):
    """Writes audit lines, one transaction each, until stopped; remembers those the
    server acknowledged (its commit returned)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.acknowledged: list[str] = []
        self.refused = 0
        self.stop = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            try:
                with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
                    conn.execute("INSERT INTO audit VALUES (%s)", [f"w{n}"])
                self.acknowledged.append(f"w{n}")
            except psycopg.Error:
                self.refused += 1
            time.sleep(0.01)


def write_under_schema_2(site: Site) -> dict[str, int]:
    """Migrate to schema 2, then write: rows schema 1 can take, one it refuses, rows of a
    table it lacks, an id handed out without a row; the ids, by name."""
    site.sql(*MIGRATION)
    ids = {"salary": site.sql("INSERT INTO account (name) VALUES ('cy') RETURNING id")[0][0]}
    ids["paid"] = site.sql(f"INSERT INTO tx (account_id, cents, kind, currency) VALUES "
                           f"({ids['salary']}, 500, 'credit', 'USD') RETURNING id")[0][0]
    site.sql(f"INSERT INTO tx_note VALUES ({ids['paid']}, 'salary')")
    ids["plain"] = site.sql("INSERT INTO tx (account_id, cents) VALUES (1, 40) RETURNING id")[0][0]
    ids["zero"] = site.sql("INSERT INTO tx (account_id, cents) VALUES (2, 0) RETURNING id")[0][0]
    site.sql("UPDATE tx SET cents = 110 WHERE id = 1",
             "UPDATE tx_note SET note = 'rent, march' WHERE tx_id = 1",
             "DELETE FROM tx WHERE id = 2",
             "INSERT INTO audit VALUES ('deploy')",
             "DELETE FROM audit WHERE ctid IN (SELECT ctid FROM audit WHERE line = 'boot' "
             "LIMIT 1)",
             "INSERT INTO fx VALUES ('USD', 1.1)")
    ids["burnt"] = site.sql("SELECT nextval(pg_get_serial_sequence('tx', 'id'))")[0][0]
    return ids


@pytest.mark.parametrize("site", [{"rollback_rows": ROLLBACK_ROWS}], indirect=True)
def test_a_migration_rolled_back_carries_every_row_written_since(site: Site) -> None:
    site.data.take()
    ids = write_under_schema_2(site)
    writer = Writer(site.url)
    writer.start()
    time.sleep(0.2)
    try:
        detail = site.roll_back()
    finally:
        time.sleep(0.2)
        writer.stop.set()
        writer.join(10)

    report = site.report(detail)
    assert report["decision"] == "carried", report
    # schema 1 is back: memo in tx, no currency, tx_note and fx gone, version 1
    assert site.sql("SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM "
                    "information_schema.columns WHERE table_name = 'tx'") == [
        ("id,account_id,cents,kind,memo",)]
    assert site.sql("SELECT to_regclass('tx_note'), to_regclass('fx')") == [(None, None)]
    assert site.sql("SELECT version FROM app_schema") == [(1,)]
    assert site.sql("SELECT version_num FROM alembic_version") == [("a1",)]
    engine = engine_for(site.item)
    assert engine is not None
    assert engine.digests()[1] == site.journal.snapshots(site.release_id)[0].meta["schema"]
    # every row written since reads back in schema 1
    assert site.sql("SELECT id, account_id, cents, kind::text, memo FROM tx ORDER BY id") == [
        (1, 1, 110, "debit", "rent, march"),
        (3, 1, -75, "debit", "refund"),
        (ids["paid"], ids["salary"], 500, "credit", "salary"),
        (ids["plain"], 1, 40, "debit", None),
    ]
    assert site.sql("SELECT id, name FROM account ORDER BY id") == [
        (1, "ada"), (2, "bob"), (ids["salary"], "cy")]
    audit = [r[0] for r in site.sql("SELECT line FROM audit")]
    assert sorted(a for a in audit if not a.startswith("w")) == ["boot", "deploy"]
    # ... and so does every write the server acknowledged while the rollback ran
    written = [a for a in audit if a.startswith("w")]
    assert writer.acknowledged and set(writer.acknowledged) <= set(written)
    assert len(written) == len(set(written))  # none carried twice
    # no id is handed out twice: the next tx id is past every one used, the burnt one too
    assert site.sql("INSERT INTO tx (account_id, cents) VALUES (1, 1) RETURNING id")[0][0] > (
        max(ids["burnt"], ids["zero"]))
    assert site.sql("INSERT INTO account (name) VALUES ('dee') RETURNING id")[0][0] > (
        ids["salary"])
    check_reported(site, detail, ids["zero"])


def check_reported(site: Site, detail: dict[str, Any], refused: int) -> None:
    """The rollback phase's record: the row schema 1 refuses (its check) and the table it
    lacks listed with why, the counts, the window; as the terminal, catch-up.{md,json}
    and the release report give them."""
    report = site.report(detail)
    assert detail["databases"] == {ITEM: f"carried ({_carried(report)} rows carried, 2 not "
                                          "carried)"}
    listed = {(row["table"], row["op"], row["row"].get("id") or row["row"].get("currency")):
              row["reason"] for row in report["listed"]}
    assert listed.keys() == {("tx", "insert", str(refused)), ("fx", "insert", "USD")}
    assert "tx_cents_check" in listed[("tx", "insert", str(refused))]
    assert "does not exist in the snapshot's schema" in listed[("fx", "insert", "USD")]
    assert report["not_carried"] == 2
    tables = report["tables"]
    assert tables["tx"] == {"insert:carried": 2, "insert:not-carried": 1, "update:carried": 1,
                            "delete:carried": 1}
    assert tables["account"] == {"insert:carried": 1}
    assert tables["tx_note"] == {"derived:not-carried": 3}
    assert tables["app_schema"] == {"derived:not-carried": 1}
    assert tables["alembic_version"] == {"derived:not-carried": 2}  # a key changed: 2 rows
    assert tables["audit"]["delete:carried"] == 1
    assert tables["audit"]["insert:carried"] >= 1
    location = site.item.location
    assert detail["writes_refused_s"][location] is not None
    assert report["locked_s"] > 0
    assert any(line.startswith(f"{ITEM} on {location}: carried") and "not carried 2" in line
               for line in summary_lines(detail["data"]))
    markdown = write_catch_up(site.folder / "rollbacks", "app-2.0", detail["data"],
                              detail["writes_refused_s"]).read_text()
    assert "tx_cents_check" in markdown and "fx" in markdown
    written = json.loads((site.folder / "rollbacks" / "catch-up.json").read_text())
    assert written["data"][location][ITEM]["not_carried"] == 2
    assert written["writes_refused_s"][location] == detail["writes_refused_s"][location]


@pytest.mark.parametrize("site", [{"on_rollback": "discard"}], indirect=True)
def test_discard_drops_the_rows_written_since_and_lists_them(site: Site) -> None:
    site.data.take()
    site.sql("ALTER TABLE tx ADD COLUMN currency text NOT NULL DEFAULT 'EUR'",
             "INSERT INTO tx (account_id, cents) VALUES (2, 9)", "DELETE FROM tx WHERE id = 3")

    report = site.report(site.roll_back())

    assert report["decision"] == "discarded"
    assert report["tables"]["tx"] == {"insert:dropped": 1, "delete:dropped": 1}
    assert {(row["op"], row["reason"]) for row in report["listed"]} == {
        ("insert", "on_rollback: discard"), ("delete", "on_rollback: discard")}
    assert site.sql("SELECT id, cents FROM tx ORDER BY id") == [(1, 100), (2, 250), (3, -75)]
    # the dropped row's id is not handed out again
    assert site.sql("INSERT INTO tx (account_id, cents) VALUES (1, 1) RETURNING id") == [(5,)]


@pytest.mark.parametrize("site", [{}], indirect=True)
def test_no_migration_keeps_the_data_live(site: Site) -> None:
    site.data.take()
    site.sql("INSERT INTO tx (account_id, cents) VALUES (2, 7)")

    detail = site.roll_back()

    report = site.report(detail)
    assert (report["decision"], detail["databases"]) == ("kept", {ITEM: "kept"})
    assert "no migration ran" in report["why"]
    assert site.sql("SELECT count(*) FROM tx") == [(4,)]


@pytest.mark.parametrize("site", [{"rollback_rows": {"tx": "SELECT id, no_such_column "
                                                            "FROM tx"}}], indirect=True)
def test_a_broken_rollback_rows_query_lists_the_rows_it_could_not_read(site: Site) -> None:
    site.data.take()
    site.sql("ALTER TABLE tx ADD COLUMN currency text NOT NULL DEFAULT 'EUR'",
             "INSERT INTO tx (account_id, cents) VALUES (2, 9)")

    report = site.report(site.roll_back())

    assert report["tables"]["tx"] == {"row:not-carried": 4}
    assert all("rollback_rows query for tx failed" in row["reason"] and
               "no_such_column" in row["reason"] for row in report["listed"])
    assert site.sql("SELECT count(*) FROM tx") == [(3,)]  # the snapshot's rows, untouched


def _carried(report: dict[str, Any]) -> int:
    return sum(n for per in report["tables"].values() for key, n in per.items()
               if key.endswith(":carried"))
