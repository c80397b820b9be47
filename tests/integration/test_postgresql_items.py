"""PostgreSQL data items on the real lab: ledger in its PostgreSQL mode, two hosts sharing
one database server (the cluster the lab runs inside primary-1, ``lab up --postgresql``),
relctl logging in from the controller with a password file.

- ledger 1.2.0 migrates the schema (1 -> 2: a new table, a rebuilt ``tx``) and fails its
  load gate: relctl rolls back, and the database is the snapshot's again (logical digest,
  and, read independently of relctl, the dump restored into a scratch database: tables,
  rows, schema version); ledger 1.1.0 serves through HAProxy and keeps writing.
- Bad input: a wrong password, a server that does not answer, a missing password file, an
  unset password variable: a clear error naming the item, exit 2 or 7, no host changed.
- The password is in no journal row, log, report or output.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest
import yaml

from controller.adapters import http
from controller.journal import Journal
from tests.integration.conftest import RunningLab, start_lab, stop_lab
from tests.integration.ledger_http import served_versions
from tests.integration.test_crash import _wait_for_child
from tests.pg_cluster import PG_BIN, free_port
from tests.relctl_cli import RELCTL, ROOT, deploy_ledger, relctl, relctl_json

pytestmark = pytest.mark.lab
EXAMPLES = ROOT / "examples" / "releases"


@dataclass(frozen=True)
class LabDatabase:
    """primary-1's cluster, as the lab reports it."""

    address: str
    port: int
    password: str

    def url(self, database: str) -> str:
        return f"postgresql://postgres:{self.password}@{self.address}:{self.port}/{database}"

    def sql(self, statement: str) -> None:
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(statement)  # type: ignore[arg-type]


@dataclass
class Setup:
    lab: RunningLab
    cluster: LabDatabase
    folder: Path  # manifests and secrets, outside the state directory
    password_file: Path
    passfile: Path
    outputs: list[str] = field(default_factory=list)  # every relctl output, for the grep

    @property
    def database(self) -> str:
        return f"postgresql://postgres@{self.cluster.address}:{self.cluster.port}/ledger"

    def conninfo(self, database: str = "ledger") -> str:
        return self.cluster.url(database)

    def apply(self, manifest: Path) -> subprocess.CompletedProcess[str]:
        result = relctl(self.lab.state_dir, "apply", str(manifest), "--yes", "--json")
        self.outputs += [result.stdout, result.stderr]
        return result


@pytest.fixture(scope="module")
def setup() -> Iterator[Setup]:
    """Two primaries at 127.0.72.10 with a PostgreSQL cluster each (the lab's), on ledger
    1.1.0 in PostgreSQL mode sharing database ``ledger`` on primary-1's cluster."""
    lab = start_lab(primary=2, backup=0, base_address="127.0.72.10", postgresql=True)
    folder = Path(tempfile.mkdtemp(prefix="relctl-pg-items-"))
    try:
        reported = lab.status["postgresql"]
        cluster = LabDatabase(lab.hosts("app_primary")[0]["address"], reported["port"],
                              Path(reported["password_file"]).read_text().strip())
        cluster.sql("CREATE DATABASE ledger")
        password_file = folder / "relctl.password"
        password_file.write_text(cluster.password + "\n")
        passfile = folder / "ledger.pgpass"
        passfile.write_text(f"{cluster.address}:{cluster.port}:ledger:postgres:"
                            f"{cluster.password}\n")
        ready = Setup(lab, cluster, folder, password_file, passfile)
        deploy = deploy_ledger(lab.state_dir, "1.1.0", extra=[
            "-e", f"ledger_database={ready.database}", "-e", f"ledger_db_passfile={passfile}"])
        assert deploy.returncode == 0, deploy.stdout[-3000:]
        wait_served(lab, "1.1.0")
        yield ready
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        stop_lab(lab)


def ledger_http(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    answer = http.request(method, url, body=body, timeout=10)
    return answer.status, (answer.json() if answer.status in (200, 201) else None)


def wait_served(lab: RunningLab, version: str) -> None:
    deadline = time.monotonic() + 30  # HAProxy's checks see the started servers
    while ledger_http("GET", f"{lab.url}/version") != (200, {"version": version}):
        assert time.monotonic() < deadline, "ledger is not served through HAProxy"
        time.sleep(0.5)


def manifest(setup: Setup, version: str, name: str, *, passing: bool = False,
             **database: Any) -> Path:
    """The example manifest of ``version`` with its SQLite item swapped for the shared
    PostgreSQL database (``database`` overrides the item's postgresql block), and a load
    gate no release can pass (10^6 requests per second); ``passing``: no load gate."""
    data = yaml.safe_load((EXAMPLES / f"ledger-{version}.yml").read_text())
    block = {"host": setup.cluster.address, "port": setup.cluster.port, "database": "ledger",
             "user": "postgres", "password_file": str(setup.password_file), **database}
    # the PostgreSQL example's rollback_rows: how schema 2's rows read in schema 1
    pg_example = EXAMPLES / "postgresql" / f"ledger-{version}.yml"
    pg_items = (yaml.safe_load(pg_example.read_text())["items"] if pg_example.exists()
                else [])
    carry = next((i.get("rollback_rows") for i in pg_items if i["kind"] == "data"), None)
    data["items"] = [item for item in data["items"] if item["kind"] != "data"] + [
        {"kind": "data", "name": "ledger-db", "engine": "postgresql",
         "postgresql": {k: v for k, v in block.items() if v is not None},
         **({"rollback_rows": carry} if carry else {})}]
    for item in data["items"]:
        if "source" in item:
            item["source"] = str((EXAMPLES / item["source"]).resolve())
    data["playbooks"]["apply"] = [str((EXAMPLES / p).resolve())
                                  for p in data["playbooks"]["apply"]]
    for gate in data["gates"]["testinfra"]:
        gate["tests"] = str((EXAMPLES / gate["tests"]).resolve())
    data["gates"]["locust"]["locustfile"] = str(
        (EXAMPLES / data["gates"]["locust"]["locustfile"]).resolve())
    data["gates"]["locust"]["thresholds"]["min_rps"] = 1_000_000  # fails whatever it sees
    data["gates"]["locust"]["duration_s"] = 3
    if passing:
        data["gates"]["locust"] = None
    data["extravars"] |= {"ledger_database": setup.database,
                          "ledger_db_passfile": str(setup.passfile)}
    data.pop("risks", None)
    data["release"] = name  # each its own release: a rolled-back one is marked bad
    path = setup.folder / f"{name}.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def rows(conninfo: str) -> dict[str, Any]:
    """What a user of the database sees: its tables, schema version and transactions."""
    with psycopg.connect(conninfo) as conn:
        tables = sorted(r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))
        version = conn.execute("SELECT version FROM ledger_schema").fetchone()
        columns = [r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'tx' "
            "ORDER BY ordinal_position")]
        tx = [tuple(r) for r in conn.execute("SELECT * FROM tx ORDER BY id")]
    return {"tables": tables, "schema": version, "columns": columns, "tx": tx}


def snapshot_rows(setup: Setup, dump: Path, scratch: str) -> dict[str, Any]:
    """What the snapshot's dump holds, restored by pg_restore into a new database."""
    setup.cluster.sql(f"CREATE DATABASE {scratch}")
    restored = subprocess.run(
        [str(PG_BIN / "pg_restore"), "--no-owner", "-d", setup.conninfo(scratch), str(dump)],
        capture_output=True, text=True, check=False)
    assert restored.returncode == 0, restored.stderr
    return rows(setup.conninfo(scratch))


def snapshot_of(setup: Setup, release: str) -> tuple[dict[str, Any], Path]:
    """The journal's row for the database's snapshot in ``release``, and its dump."""
    with Journal(setup.lab.state_dir / "journal.sqlite") as journal:
        record = journal.find_release(release)
        assert record is not None
        snaps = [s for s in journal.snapshots(record.id) if s.item == "ledger-db"]
    assert len(snaps) == 1 and snaps[0].host == setup.database
    return snaps[0].meta, snaps[0].path


def test_a_failed_release_brings_the_database_back(setup: Setup) -> None:
    lab = setup.lab
    written = [ledger_http("POST", f"{lab.url}/tx", {"account": "ada", "amount_cents": n})
               for n in (100, 250, -75)]
    assert all(status == 201 for status, _ in written)
    before = rows(setup.conninfo())
    assert before["tables"] == ["ledger_schema", "tx"] and before["schema"] == (1,)

    result = setup.apply(manifest(setup, "1.2.0", "ledger-1.2.0-pg"))

    assert result.returncode == 3, json.loads(result.stdout or "{}").get("message", result.stderr)
    outcome = json.loads(result.stdout)
    assert outcome["state"] == "rolled_back"
    assert any(g["kind"] == "locust" and g["verdict"] == "fail" for g in outcome["gates"])
    meta, dump = snapshot_of(setup, outcome["release"])
    assert meta["engine"] == "postgresql" and meta["server_version"].startswith("15")
    # the migration ran, so the snapshot came back with every row written since carried
    data = outcome["data"][setup.database]["ledger-db"]
    assert data["decision"] == "carried", data
    # read without relctl: the dump restored into a scratch database has schema 1 and a
    # subset of the live rows (the Locust gate's writes are carried on top of it)
    now = rows(setup.conninfo())
    snapshot = snapshot_rows(setup, dump, "scratch")
    assert now["tables"] == snapshot["tables"] == ["ledger_schema", "tx"]
    assert now["schema"] == snapshot["schema"] == (1,)
    assert now["columns"] == snapshot["columns"]
    assert set(snapshot["tx"]) <= set(now["tx"])
    assert "account_id" not in now["columns"]
    assert {tx["id"] for _, tx in written} <= {row[0] for row in now["tx"]}
    # the previous release serves again, and writes after the rollback get fresh ids
    assert served_versions(lab) == {"1.1.0"}
    status, tx = ledger_http("POST", f"{lab.url}/tx", {"account": "ada", "amount_cents": 1})
    assert status == 201 and tx["id"] > max(row[0] for row in now["tx"])


def test_a_controller_killed_in_the_rollback_is_resumed(setup: Setup) -> None:
    """kill -9 of the controller once the rollback stopped the services (the database is
    being restored, or about to be): no client tool outlives it, and ``resume`` finishes
    the rollback, database included."""
    lab = setup.lab
    name = "ledger-1.2.0-pg-killed"
    command = [*RELCTL, "--state-dir", str(lab.state_dir), "apply",
               str(manifest(setup, "1.2.0", name)), "--yes", "--json"]
    controller = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  text=True, start_new_session=True)
    try:
        _wait_for_child(lab.state_dir / "journal.sqlite", "rollback", "-restore-stop",
                        controller)
        time.sleep(0.4)  # the stop pass ends; the database restore begins
    finally:
        if controller.poll() is None:
            os.kill(controller.pid, signal.SIGKILL)
        setup.outputs.append(controller.communicate()[1])
    time.sleep(0.5)
    tools = [p.info for p in psutil.process_iter(["name", "cmdline"])
             if p.info["name"] in ("pg_dump", "pg_restore", "psql")
             and str(setup.cluster.port) in " ".join(p.info["cmdline"] or [])]
    assert tools == []

    resumed = relctl(lab.state_dir, "resume", "--json")
    setup.outputs += [resumed.stdout, resumed.stderr]

    assert resumed.returncode == 3, resumed.stderr
    assert "stopped in phase rollback" in resumed.stderr
    _, dump = snapshot_of(setup, name)
    now, snapshot = rows(setup.conninfo()), snapshot_rows(setup, dump, "scratch_killed")
    assert now["schema"] == (1,) and now["tables"] == snapshot["tables"]
    assert set(snapshot["tx"]) <= set(now["tx"])  # nothing of the snapshot lost
    assert served_versions(lab) == {"1.1.0"}


def test_rolling_back_a_released_release_brings_its_schema_back(setup: Setup) -> None:
    """``relctl rollback`` of a release that passed (its migration kept): the database is
    the snapshot's again and the previous release serves."""
    lab = setup.lab
    released = setup.apply(manifest(setup, "1.2.0", "ledger-1.2.0-pg-kept", passing=True))
    assert released.returncode == 0, json.loads(released.stdout or "{}").get("message")
    assert rows(setup.conninfo())["schema"] == (2,)
    assert served_versions(lab) == {"1.2.0"}

    rolled = relctl(lab.state_dir, "rollback", "ledger-1.2.0-pg-kept", "--json")
    setup.outputs += [rolled.stdout, rolled.stderr]

    assert rolled.returncode == 3, rolled.stderr
    _, dump = snapshot_of(setup, "ledger-1.2.0-pg-kept")
    now, snapshot = rows(setup.conninfo()), snapshot_rows(setup, dump, "scratch_kept")
    assert now["tables"] == ["ledger_schema", "tx"] and now["schema"] == (1,)
    assert set(snapshot["tx"]) <= set(now["tx"])
    assert served_versions(lab) == {"1.1.0"}


@pytest.mark.parametrize(("case", "database", "code", "words"), [
    ("wrong-password", {"password_file": "WRONG"}, 2, "refused the login"),
    ("no-server", {"port": "FREE"}, 7, "cannot be reached"),
    ("unset-variable", {"password_file": None, "password_env": "RELCTL_TEST_UNSET_PW"}, 2,
     "RELCTL_TEST_UNSET_PW"),
    ("missing-file", {"password_file": "/nonexistent/relctl.pw"}, 2, "password_file"),
])
def test_bad_database_input_touches_nothing(setup: Setup, case: str, database: dict[str, Any],
                                            code: int, words: str) -> None:
    lab = setup.lab
    if database.get("password_file") == "WRONG":
        wrong = setup.folder / "wrong.password"
        wrong.write_text("not-the-password\n")
        database = {"password_file": str(wrong)}
    if database.get("port") == "FREE":
        database = {"port": free_port(setup.cluster.address)}
    releases_before = relctl_json(lab.state_dir, "history")
    digest_before = rows(setup.conninfo())

    result = setup.apply(manifest(setup, "1.2.0", f"bad-{case}", **database))

    assert result.returncode == code, result.stderr[-2000:]
    assert words in result.stderr and "Traceback" not in result.stderr
    assert "ledger-db" in result.stderr or "bad-missing-file.yml" in result.stderr
    assert relctl_json(lab.state_dir, "history") == releases_before  # no release started
    assert rows(setup.conninfo()) == digest_before
    assert served_versions(lab) == {"1.1.0"}


def test_the_password_is_nowhere(setup: Setup) -> None:
    """Not in relctl's output, journal, run artifacts, snapshots or reports. (The lab's
    own key folder and its hosts' disks hold it by design: a host's /etc/ledger/pgpass.)"""
    secret = setup.cluster.password.encode()
    for form in ("html", "markdown", "json"):  # the release reports, as people read them
        report = relctl(setup.lab.state_dir, "report", "ledger-1.2.0-pg", "--format", form)
        assert report.returncode == 0, report.stderr
        setup.outputs += [report.stdout, report.stderr]
    shown = relctl(setup.lab.state_dir, "show", "ledger-1.2.0-pg", "--json")
    setup.outputs += [shown.stdout, shown.stderr]
    assert setup.outputs, "the tests above ran relctl"
    assert all(secret not in text.encode() for text in setup.outputs)
    lab_dir = Path(setup.lab.status["lab_dir"])
    owned = (lab_dir / "keys", lab_dir / "hosts")
    searched = [path for path in setup.lab.state_dir.rglob("*") if path.is_file()
                and not any(folder in path.parents for folder in owned)]
    assert any(path.name == "journal.sqlite" for path in searched)
    assert [path for path in searched if secret in path.read_bytes()] == []


def test_a_lost_host_gets_its_cluster_back_with_lab_up(setup: Setup) -> None:
    """A lab host's cluster dies with the host (PID 1 killed, as a drill does) and comes
    back with ``relctl lab up``, its data kept: the host's own /var."""
    lab = setup.lab
    host = lab.hosts("app_primary")[1]
    LabDatabase(host["address"], setup.cluster.port, setup.cluster.password).sql(
        "CREATE DATABASE kept")
    os.kill(host["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while psutil.pid_exists(host["pid"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(LabDatabase(host["address"], setup.cluster.port,
                                    setup.cluster.password).url("kept"), connect_timeout=2)

    up = relctl(lab.state_dir, "lab", "up")

    assert up.returncode == 0, up.stderr
    again = LabDatabase(host["address"], setup.cluster.port, setup.cluster.password)
    with psycopg.connect(again.url("kept"), connect_timeout=5) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("kept",)
