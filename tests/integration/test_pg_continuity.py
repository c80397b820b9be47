"""Continuity on PostgreSQL streaming replication, on the real lab: ledger in PostgreSQL
mode, its database on primary-1's cluster streamed to a standby on backup-1's.

The tests of this module run in order on one lab (2 primaries, 1 backup at 127.0.76.10,
a PostgreSQL cluster on each app host). Every ledger lists both clusters in its database
URL with target_session_attrs=read-write, its own site's first, so it follows a
promotion with no redeploy.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from controller.adapters import http
from tests.integration.conftest import RunningLab, _skip_without_lab
from tests.integration.continuity_helpers import (
    bring_primary_site_back,
    kill_primary_site,
    read,
    served_by,
    write,
)
from tests.relctl_cli import LEDGER_SERVICE, ROOT, deploy_ledger, relctl, relctl_json

pytestmark = pytest.mark.lab
EXAMPLE = ROOT / "examples" / "continuity" / "ledger-postgresql.yml"
BASE = "127.0.76."  # lb .10, primary-1 .11, primary-2 .12, backup-1 .13


@dataclass(frozen=True)
class Site:
    lab: RunningLab
    plan: Path
    password: str
    port: int
    built: dict[str, Any]  # relctl replicate --json, which built the standby

    def conninfo(self, host: str) -> str:
        address = {"primary-1": f"{BASE}11", "backup-1": f"{BASE}13"}[host]
        return (f"host={address} port={self.port} dbname=ledger user=postgres "
                f"password={self.password} connect_timeout=5")

    def sql(self, host: str, statement: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.conninfo(host), autocommit=True) as conn:
            cursor = conn.execute(statement)  # type: ignore[arg-type]
            return cursor.fetchall() if cursor.description else []

    def run(self, *args: str) -> tuple[int, dict[str, Any], str]:
        result = relctl(self.lab.state_dir, *args, "--plan", str(self.plan), "--json")
        document = json.loads(result.stdout) if result.stdout.strip() else {}
        return result.returncode, document, result.stderr


def url(*hosts: str) -> str:
    return (f"postgresql://postgres@{','.join(f'{BASE}{h}:5432' for h in hosts)}/ledger"
            "?target_session_attrs=read-write")


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    _skip_without_lab()
    state = Path("/var/tmp/relctl-pg-tests") / uuid.uuid4().hex[:8]
    state.mkdir(parents=True)
    folder = Path(tempfile.mkdtemp(prefix="relctl-pg-continuity-"))
    try:
        up = relctl(state, "lab", "up", "--primary", "2", "--backup", "1", "--postgresql",
                    "--base-address", f"{BASE}10", "--service", LEDGER_SERVICE)
        assert up.returncode == 0, up.stderr
        lab = RunningLab(state, relctl_json(state, "lab", "status"))
        reported = lab.status["postgresql"]
        password = Path(reported["password_file"]).read_text().strip()
        with psycopg.connect(f"host={BASE}11 port={reported['port']} dbname=postgres "
                             f"user=postgres password={password}", autocommit=True) as conn:
            conn.execute("CREATE DATABASE ledger")
        password_file = folder / "relctl.password"
        password_file.write_text(password + "\n")
        passfile = folder / "ledger.pgpass"
        passfile.write_text(f"*:{reported['port']}:ledger:postgres:{password}\n")
        text = EXAMPLE.read_text().replace("127.0.0.11", f"{BASE}11").replace(
            "password_env: RELCTL_LAB_PG_PASSWORD", f"password_file: {password_file}").replace(
            "../../loadtests/", f"{ROOT}/loadtests/")
        plan = folder / "plan.yml"
        plan.write_text(text)

        def deploy(group: str, order: tuple[str, str]) -> None:
            done = deploy_ledger(state, "1.1.0", group, extra=[
                "-e", f"ledger_database={url(*order)}", "-e", f"ledger_db_passfile={passfile}"])
            assert done.returncode == 0, done.stdout[-3000:]

        deploy("app_primary", ("11", "13"))
        # 1.1.0 released through relctl: the journal's last good release, which failback
        # puts back on the primaries.
        released = relctl(state, "apply", str(release(folder, password_file, passfile)),
                          "--yes")
        assert released.returncode == 0, released.stderr
        # The standby first: backup-1's own cluster has no database ledger until then.
        built = relctl(state, "replicate", "--plan", str(plan), "--json")
        assert built.returncode == 0, built.stderr
        deploy("app_backup", ("13", "11"))
        yield Site(lab, plan, password, int(reported["port"]), json.loads(built.stdout))
    finally:
        relctl(state, "lab", "down")
        shutil.rmtree(state, ignore_errors=True)
        shutil.rmtree(folder, ignore_errors=True)


def release(folder: Path, password_file: Path, passfile: Path) -> Path:
    """The PostgreSQL example manifest of 1.1.0 for this lab: the database on primary-1's
    cluster, the URL listing both clusters, a latency allowance for a noisy machine."""
    examples = ROOT / "examples" / "releases" / "postgresql"
    data = yaml.safe_load((examples / "ledger-1.1.0.yml").read_text())
    for item in data["items"]:
        if "source" in item:
            item["source"] = str((examples / item["source"]).resolve())
        if item["kind"] == "data":
            item["postgresql"] |= {"host": f"{BASE}11", "password_file": str(password_file)}
            item["postgresql"].pop("password_env")
    data["playbooks"]["apply"] = [str((examples / p).resolve())
                                  for p in data["playbooks"]["apply"]]
    for gate in data["gates"]["testinfra"]:
        gate["tests"] = str((examples / gate["tests"]).resolve())
    data["gates"]["locust"]["locustfile"] = str(
        (examples / data["gates"]["locust"]["locustfile"]).resolve())
    data["gates"]["locust"]["thresholds"]["p95_slack_ms"] = 200
    data["extravars"] = {"ledger_version": "1.1.0", "ledger_database": url("11", "13"),
                         "ledger_db_passfile": str(passfile)}
    path = folder / "ledger-1.1.0.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def in_recovery(site: Site, host: str) -> bool:
    return bool(site.sql(host, "SELECT pg_is_in_recovery()")[0][0])


def streams_from(site: Site, host: str, source: str) -> bool:
    rows = site.sql(host, "SELECT status, sender_host FROM pg_stat_wal_receiver")
    return bool(rows) and rows[0] == ("streaming", f"{BASE}{source}")


def on(site: Site, host: str, tx_id: int, timeout: float = 5) -> bool:
    """Whether transaction ``tx_id`` is in ``host``'s database (waits for replay)."""
    deadline = time.monotonic() + timeout
    while True:
        if site.sql(host, f"SELECT count(*) FROM tx WHERE id = {int(tx_id)}")[0][0]:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def test_replicate_builds_a_streaming_standby_once(site: Site) -> None:
    standby = site.built["detail"]["standbys"]["ledger-db"]["backup-1"]
    assert standby["receiver"] == "streaming" and standby["in_recovery"]
    assert in_recovery(site, "backup-1") and streams_from(site, "backup-1", "11")
    started = site.sql("backup-1", "SELECT pg_postmaster_start_time()")[0][0]
    tx = write(site.lab, "pg-standby", 1234)
    assert on(site, "backup-1", tx["id"])  # written through the LB, replayed on backup-1
    code, second, stderr = site.run("replicate")
    assert code == 0, stderr
    assert second["detail"]["lag_s"] is not None and second["detail"]["lag_s"] < 1
    assert site.sql("backup-1", "SELECT pg_postmaster_start_time()")[0][0] == started


def test_site_loss_drill_promotes_the_standby_then_fails_back(site: Site) -> None:
    acked: list[tuple[float, dict[str, Any]]] = []
    stop = threading.Event()

    def writer() -> None:  # a teller recording payments through the LB, every 100 ms
        n = 0
        while not stop.is_set():
            n += 1
            answer = http.request("POST", f"{site.lab.url}/tx",
                                  {"account": "pg-teller", "amount_cents": n}, timeout=2)
            if answer.status == 201:
                acked.append((time.time(), answer.json()))
            time.sleep(0.1)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        code, report, stderr = site.run("drill", "site-loss")  # restores: fails back
    finally:
        stop.set()
        thread.join(timeout=10)
    assert code == 0, (stderr, report.get("figures", {}).get("problems"),
                       report.get("figures", {}).get("timeline"))
    figures = report["figures"]
    measures = figures["measures"]
    assert figures["verdict"] == "pass", figures["problems"]
    assert measures["served_by_after"] == ["backup-1"]
    assert measures["rpo_s"] is not None and 0 <= measures["rpo_s"] <= 1, measures
    assert any("standby on backup-1 promoted" in what for _, what in figures["timeline"])
    # Failed back: primary-1's cluster is the primary again, backup-1's its standby.
    assert served_by(site.lab) == "primary-1"
    assert not in_recovery(site, "primary-1") and in_recovery(site, "backup-1")
    assert streams_from(site, "backup-1", "11")
    fault = (datetime.fromisoformat(figures["started"]).timestamp()
             + figures["moments"]["fault_s"])
    due = [tx for at, tx in acked if at <= fault - 1]
    assert [tx for at, tx in acked if fault - 2 <= at <= fault - 1], "no write 1 s before"
    for tx in due:
        assert read(site.lab, tx["id"]) == (200, tx, "primary-1")


def test_failover_then_failback_catch_up_lists_each_side(site: Site) -> None:
    replicated = write(site.lab, "pg-alice", 1000)
    assert on(site, "backup-1", replicated["id"])
    # The standby stops receiving (a cut link): what primary-1 gets next is its alone.
    site.sql("backup-1", "ALTER SYSTEM SET primary_conninfo = ''")
    site.sql("backup-1", "SELECT pg_reload_conf()")
    deadline = time.monotonic() + 10
    while site.sql("backup-1", "SELECT count(*) FROM pg_stat_wal_receiver")[0][0]:
        assert time.monotonic() < deadline, "the standby still receives"
        time.sleep(0.2)
    lost = write(site.lab, "pg-bob", -300)
    kill_primary_site(site.lab)

    code, outcome, stderr = site.run("failover", "--yes")
    assert code == 0, stderr
    assert outcome["figures"]["served_by"] == ["backup-1"]
    assert outcome["figures"]["rpo_s"] is not None and outcome["figures"]["rpo_s"] > 0
    assert read(site.lab, replicated["id"]) == (200, replicated, "backup-1")
    assert read(site.lab, lost["id"])[1] != lost  # lost with the site, until failback
    during = write(site.lab, "pg-erin", 777)  # written on the backup site in the outage

    bring_primary_site_back(site.lab)
    code, outcome, stderr = site.run("failback", "--yes")
    assert code == 0, stderr
    catch = outcome["figures"]["catch_up"]
    assert [(r["id"], r["account"], r["amount_cents"])
            for r in catch["missing_on_backup"]["tx"]] == [(lost["id"], "pg-bob", -300)]
    written = [(r["account"], r["amount_cents"]) for r in catch["only_on_backup"]["tx"]
               if r["account"] != "continuity-probe"]  # the failover's own checks aside
    assert written == [("pg-erin", 777)]
    assert served_by(site.lab) == "primary-1"
    assert read(site.lab, during["id"]) == (200, during, "primary-1")
    assert not in_recovery(site, "primary-1") and streams_from(site, "backup-1", "11")
    report = Path(outcome["figures"]["catch_up_report"]).read_text()
    assert "pg-bob" in report and site.password not in report
