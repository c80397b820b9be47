"""Continuity on PostgreSQL streaming replication, on the real lab: ledger in PostgreSQL
mode, its database on primary-1's cluster streamed to a standby on each backup's.

The tests of this module run in order on one lab (2 primaries, 2 backups at 127.0.76.10,
a PostgreSQL cluster on each app host): a failover promotes one standby and re-points the
other at it. Every ledger lists both clusters in its database
URL with target_session_attrs=read-write, its own site's first, so it follows a
promotion with no redeploy.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.integration.conftest import RunningLab, start_lab, stop_lab
from tests.integration.continuity_helpers import (
    Teller,
    bring_primary_site_back,
    fault_at,
    kill_primary_site,
    read,
    served_by,
    write,
)
from tests.integration.pg_site import prepare_site
from tests.relctl_cli import relctl

pytestmark = pytest.mark.lab
BASE = "127.0.76."  # lb .10, primary-1 .11, primary-2 .12, backup-1 .13, backup-2 .14
ADDRESS = {"primary-1": "11", "backup-1": "13", "backup-2": "14"}
BACKUPS = ["backup-1", "backup-2"]


@dataclass(frozen=True)
class Site:
    lab: RunningLab
    plan: Path
    password: str
    port: int
    built: dict[str, Any]  # relctl replicate --json, which built the standby

    def conninfo(self, host: str) -> str:
        address = f"{BASE}{ADDRESS[host]}"
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


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    lab = start_lab(primary=2, backup=2, base_address="127.0.76.10", postgresql=True)
    folder = Path(tempfile.mkdtemp(prefix="relctl-pg-continuity-"))
    try:
        built = prepare_site(lab.state_dir, folder, BASE, backups=2)
        yield Site(lab, built.plan, built.password, built.port, built.replicated)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        stop_lab(lab)


def in_recovery(site: Site, host: str) -> bool:
    return bool(site.sql(host, "SELECT pg_is_in_recovery()")[0][0])


def streams_from(site: Site, host: str, source: str) -> bool:
    rows = site.sql(host, "SELECT status, sender_host FROM pg_stat_wal_receiver")
    return bool(rows) and rows[0] == ("streaming", f"{BASE}{source}")


def promoted(site: Site) -> tuple[str, str]:
    """The backup whose cluster a failover promoted, and the other one."""
    (serving,) = [h for h in BACKUPS if not in_recovery(site, h)]
    return serving, next(h for h in BACKUPS if h != serving)


def follows(site: Site, host: str, source: str, timeout: float = 30) -> bool:
    """Whether ``host``'s standby streams from ``source``'s cluster (waits for it)."""
    deadline = time.monotonic() + timeout
    while not streams_from(site, host, ADDRESS[source]):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def cut_link(site: Site, host: str) -> None:
    """``host``'s standby stops receiving (its primary's port made one nothing answers)."""
    conninfo = str(site.sql(host, "SHOW primary_conninfo")[0][0])
    site.sql(host, "ALTER SYSTEM SET primary_conninfo = '{}'".format(
        re.sub(r"port=\d+", "port=1", conninfo).replace("'", "''")))
    site.sql(host, "SELECT pg_reload_conf()")
    deadline = time.monotonic() + 10
    while site.sql(host, "SELECT count(*) FROM pg_stat_wal_receiver")[0][0]:
        assert time.monotonic() < deadline, f"{host}'s standby still receives"
        time.sleep(0.2)


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
    for host in BACKUPS:
        standby = site.built["detail"]["standbys"]["ledger-db"][host]
        assert standby["receiver"] == "streaming" and standby["in_recovery"]
        assert in_recovery(site, host) and streams_from(site, host, "11")
    # A standby takes no writes: the LB keeps the backups out of service until a failover.
    assert site.built["detail"]["out_of_service"] == BACKUPS
    started = site.sql("backup-1", "SELECT pg_postmaster_start_time()")[0][0]
    tx = write(site.lab, "pg-standby", 1234)
    assert on(site, "backup-1", tx["id"])  # written through the LB, replayed on backup-1
    assert on(site, "backup-2", tx["id"])
    code, second, stderr = site.run("replicate")
    assert code == 0, stderr
    assert second["detail"]["lag_s"] is not None and second["detail"]["lag_s"] < 1
    assert site.sql("backup-1", "SELECT pg_postmaster_start_time()")[0][0] == started


def test_site_loss_drill_promotes_the_standby_then_fails_back(site: Site) -> None:
    with Teller(site.lab.url, "pg-teller") as teller:
        code, report, stderr = site.run("drill", "site-loss")  # restores: fails back
    assert code == 0, (stderr, report.get("figures", {}).get("problems"),
                       report.get("figures", {}).get("timeline"))
    figures = report["figures"]
    measures = figures["measures"]
    assert figures["verdict"] == "pass", figures["problems"]
    assert measures["served_by_after"] == ["backup-1"]
    assert measures["rpo_s"] is not None and 0 <= measures["rpo_s"] <= 1, measures
    # The backups stayed out of service until one was promoted, and the LB held the
    # requests that came meanwhile: no request reached a standby. What may still fail is
    # a request already sent to a primary at the instant it died, which HAProxy retries
    # at once and, finding no server yet, answers 503 itself (0 in 8 drills on an idle
    # machine, 1 or 2 at the fault's instant on a loaded one: docs/continuity.md).
    assert measures["load_requests_idempotent"] > 0
    assert measures["load_failures_idempotent"] <= 2, measures
    timeline = [what for _, what in figures["timeline"]]
    assert any(re.search(r"standby on backup-\d promoted", what) for what in timeline)
    assert any(re.search(r"backup-\d stream from backup-\d", what) for what in timeline)
    # Failed back: primary-1's cluster is the primary again, both backups its standbys.
    assert served_by(site.lab) == "primary-1"
    assert not in_recovery(site, "primary-1")
    assert all(in_recovery(site, h) and streams_from(site, h, "11") for h in BACKUPS)
    fault = fault_at(figures)
    assert teller.acked_between(fault - 2, fault - 1), "no write 1 s before the fault"
    for tx in teller.acked_between(0, fault - 1):
        assert read(site.lab, tx["id"]) == (200, tx, "primary-1")


def test_failover_then_failback_catch_up_lists_each_side(site: Site) -> None:
    replicated = write(site.lab, "pg-alice", 1000)
    assert on(site, "backup-1", replicated["id"]) and on(site, "backup-2", replicated["id"])
    # The standbys stop receiving (a cut link): what primary-1 gets next is its alone.
    for host in BACKUPS:
        cut_link(site, host)
    lost = write(site.lab, "pg-bob", -300)
    kill_primary_site(site.lab)

    code, outcome, stderr = site.run("failover", "--yes")
    assert code == 0, stderr
    assert outcome["figures"]["served_by"] == ["backup-1"]
    assert outcome["figures"]["rpo_s"] is not None and outcome["figures"]["rpo_s"] > 0
    assert read(site.lab, replicated["id"]) == (200, replicated, "backup-1")
    assert read(site.lab, lost["id"])[1] != lost  # lost with the site, until failback
    during = write(site.lab, "pg-erin", 777)  # written on the backup site in the outage
    # The other standby was re-pointed at the promoted one: it has the outage's writes.
    serving, other = promoted(site)
    assert follows(site, other, serving), f"{other} does not stream from {serving}"
    assert on(site, other, during["id"])

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
    assert not in_recovery(site, "primary-1")
    assert all(streams_from(site, h, "11") for h in BACKUPS)
    report = Path(outcome["figures"]["catch_up_report"]).read_text()
    assert "pg-bob" in report and site.password not in report
