"""PostgreSQL data items against a real server on loopback (the session's cluster on
127.0.70.1, ``tests/integration/conftest.py``): the engine's dump, restore and logical
digest, its login errors, and the sample ledger's PostgreSQL mode across a schema
migration.

No lab: a server, so these run with the integration tests (the rules a manifest's
PostgreSQL item follows, without a server, are in ``tests/unit/test_postgresql_data.py``).
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from controller.data import engine_for
from controller.errors import DataUnreachableError, InputError
from controller.models.items import DataItem
from tests.pg_cluster import PgCluster, free_port
from tests.unit.ledger_support import harness


def item_for(cluster: PgCluster, database: str, **overrides: object) -> DataItem:
    block = {"host": cluster.address, "port": cluster.port, "database": database,
             "user": "relctl", "password_env": "RELCTL_TEST_PG_PASSWORD", **overrides}
    return DataItem.model_validate({"kind": "data", "name": "app-db", "engine": "postgresql",
                                    "postgresql": block})


@pytest.fixture
def database(pg_cluster: PgCluster, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new database owned by relctl's role, its password in the environment."""
    monkeypatch.setenv("RELCTL_TEST_PG_PASSWORD", pg_cluster.password)
    return pg_cluster.create_database().rsplit("/", 1)[1]


def run(url: str, *statements: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        found: list[tuple[object, ...]] = []
        for statement in statements:
            cursor = conn.execute(statement)
            found = [tuple(r) for r in cursor.fetchall()] if cursor.description else []
        return found


def test_restore_brings_back_exactly_the_snapshot(pg_cluster: PgCluster, database: str,
                                                  tmp_path: Path) -> None:
    url = pg_cluster.url(database)
    run(url, "CREATE TABLE tx (id serial PRIMARY KEY, account text, cents int)",
        "INSERT INTO tx (account, cents) SELECT 'a' || g, g FROM generate_series(1, 500) g",
        "CREATE TYPE mood AS ENUM ('ok', 'bad')")
    engine = engine_for(item_for(pg_cluster, database))
    assert engine is not None
    capture = engine.capture(tmp_path)
    assert capture.digest == engine.digest() and capture.server_version.startswith("15")
    # what a migration does: a new table and schema, a new column, rows, a view, a function
    run(url, "CREATE TABLE accounts (id serial PRIMARY KEY, name text UNIQUE)",
        "ALTER TABLE tx ADD COLUMN account_id int REFERENCES accounts (id)",
        "INSERT INTO tx (account, cents) VALUES ('late', 1)",
        "CREATE SCHEMA extra", "CREATE TABLE extra.t (x int)",
        "CREATE VIEW recent AS SELECT * FROM tx", "CREATE FUNCTION one() RETURNS int "
        "LANGUAGE sql AS 'SELECT 1'", "DROP TYPE mood")
    assert engine.digest() != capture.digest

    engine.restore(capture.dump)

    assert engine.digest() == capture.digest
    assert run(url, "SELECT to_regclass('accounts'), to_regclass('extra.t'), "
                    "to_regclass('recent'), to_regprocedure('one()'), to_regtype('mood')::text"
               ) == [(None, None, None, None, "mood")]
    assert run(url, "SELECT count(*), sum(cents) FROM tx") == [(500, 125250)]
    assert run(url, "INSERT INTO tx (account, cents) VALUES ('next', 0) RETURNING id") == [(501,)]


def test_a_row_changed_changes_the_digest(pg_cluster: PgCluster, database: str) -> None:
    url = pg_cluster.url(database)
    run(url, "CREATE TABLE t (id int PRIMARY KEY, v text)", "INSERT INTO t VALUES (1, 'a')")
    engine = engine_for(item_for(pg_cluster, database))
    assert engine is not None
    first = engine.digest()
    run(url, "UPDATE t SET v = 'b'")
    assert engine.digest() != first
    run(url, "UPDATE t SET v = 'a'")
    assert engine.digest() == first


def test_login_errors_name_the_item(pg_cluster: PgCluster, database: str,
                                    monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("nope\n")
    cases: list[tuple[DataItem, type[Exception], str]] = [
        (item_for(pg_cluster, database, password_env=None, password_file=wrong), InputError,
         "refused the login"),
        (item_for(pg_cluster, "no_such_db"), InputError, "refused the login"),
        (item_for(pg_cluster, database, port=free_port(pg_cluster.address)),
         DataUnreachableError, "cannot be reached"),
        (item_for(pg_cluster, database, password_env="RELCTL_TEST_UNSET"), InputError,
         "RELCTL_TEST_UNSET"),
    ]
    monkeypatch.delenv("RELCTL_TEST_UNSET", raising=False)
    for item, error, words in cases:
        engine = engine_for(item)
        assert engine is not None
        with pytest.raises(error) as raised:
            engine.check()
        assert "app-db" in str(raised.value) and words in str(raised.value)
        assert pg_cluster.password not in str(raised.value)


def test_ledger_runs_every_release_on_postgresql(pg_cluster: PgCluster, database: str,
                                                 releases: dict[str, Path],
                                                 tmp_path: Path) -> None:
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"{pg_cluster.address}:{pg_cluster.port}:{database}:relctl:"
                        f"{pg_cluster.password}\n")
    passfile.chmod(0o600)
    url = f"postgresql://relctl@{pg_cluster.address}:{pg_cluster.port}/{database}" \
          f"?passfile={passfile}"
    with harness.Server(releases["1.1.0"], tmp_path, url) as server:
        written = [server.post("/tx", {"account": a, "amount_cents": n})[1]
                   for a, n in (("alice", 5), ("bob", 7), ("alice", 3))]
        assert server.get("/accounts/alice/balance")[1]["balance_cents"] == 8
    config = harness.write_config(tmp_path, harness.free_port(), url)
    migrated = harness.run_tool(releases["1.2.0"], "ledger-migrate", "--config", str(config))
    assert migrated.returncode == 0, migrated.stderr
    assert "migrated schema 1 -> 2" in migrated.stdout
    with harness.Server(releases["1.2.0"], tmp_path, url) as server:
        assert server.get(f"/tx/{written[1]['id']}")[1]["account"] == "bob"
        assert server.post("/tx", {"account": "carol", "amount_cents": 1})[1]["id"] == 4
    with harness.Server(releases["2.0.1"], tmp_path, url) as server:
        assert server.get(f"/tx/{written[0]['id']}")[0] == 500  # its deliberate bug
    refused = harness.run_server_until_exit(releases["1.1.0"],
                                            harness.write_config(tmp_path, 1, url))
    assert refused.returncode == 2 and "schema 2" in refused.stderr
