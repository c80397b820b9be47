"""A lab site running ledger in PostgreSQL mode with a streaming standby: what the
PostgreSQL continuity tests and ``bench/rpo.py`` start from.

2 primaries and 1 backup at BASE10 (lb), BASE11-12 (primaries), BASE13 (backup), a
PostgreSQL cluster on each app host; database ``ledger`` on primary-1's cluster, a standby
of it on backup-1's (``relctl replicate``); ledger 1.1.0 released through relctl (the
journal's last good release). Every ledger lists both clusters in its database URL with
target_session_attrs=read-write, its own site's first, so it follows a promotion.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import yaml

from tests.relctl_cli import LEDGER_SERVICE, ROOT, deploy_ledger, relctl

EXAMPLE = ROOT / "examples" / "continuity" / "ledger-postgresql.yml"


@dataclass(frozen=True)
class BuiltSite:
    plan: Path  # the example continuity plan, for this lab
    password: str  # of the clusters' postgres role
    port: int
    replicated: dict[str, Any]  # relctl replicate --json, which built the standby


class SiteError(RuntimeError):
    """A step of building the site failed (the message has its output)."""


def _must(done: subprocess.CompletedProcess[str], what: str) -> subprocess.CompletedProcess[str]:
    if done.returncode != 0:
        raise SiteError(f"{what} failed (exit {done.returncode}):\n{done.stdout[-3000:]}"
                        f"\n{done.stderr[-3000:]}")
    return done


def url(*hosts: str, base: str) -> str:
    """ledger's database URL listing the clusters of ``hosts`` (last address bytes)."""
    return (f"postgresql://postgres@{','.join(f'{base}{h}:5432' for h in hosts)}/ledger"
            "?target_session_attrs=read-write")


def build_site(state: Path, folder: Path, base: str, backups: int = 1) -> BuiltSite:
    """Bring the lab up under ``state`` (``base``: the first three address bytes and a
    dot, e.g. ``127.0.76.``), then the site on it (``prepare_site``)."""
    _must(relctl(state, "lab", "up", "--primary", "2", "--backup", str(backups),
                 "--postgresql", "--base-address", f"{base}10", "--service", LEDGER_SERVICE),
          "lab up")
    return prepare_site(state, folder, base, backups)


def prepare_site(state: Path, folder: Path, base: str, backups: int = 1) -> BuiltSite:
    """The site on a lab already up under ``state`` (2 primaries and ``backups`` backups
    from ``{base}10``, ``--postgresql``); plan and secrets go to ``folder``. Each backup's
    ledger lists the backups' clusters, then primary-1's."""
    status = json.loads(_must(relctl(state, "lab", "status", "--json"), "lab status").stdout)
    reported = status["postgresql"]
    password = Path(reported["password_file"]).read_text().strip()
    with psycopg.connect(f"host={base}11 port={reported['port']} dbname=postgres "
                         f"user=postgres password={password}", autocommit=True) as conn:
        conn.execute("CREATE DATABASE ledger")
    password_file = folder / "relctl.password"
    password_file.write_text(password + "\n")
    passfile = folder / "ledger.pgpass"
    passfile.write_text(f"*:{reported['port']}:ledger:postgres:{password}\n")
    text = EXAMPLE.read_text().replace("127.0.0.11", f"{base}11").replace(
        "password_env: RELCTL_LAB_PG_PASSWORD", f"password_file: {password_file}").replace(
        "../../loadtests/", f"{ROOT}/loadtests/")
    plan = folder / "plan.yml"
    plan.write_text(text)

    def deploy(group: str, order: tuple[str, ...]) -> None:
        _must(deploy_ledger(state, "1.1.0", group, extra=[
            "-e", f"ledger_database={url(*order, base=base)}",
            "-e", f"ledger_db_passfile={passfile}"]), f"deploy to {group}")

    deploy("app_primary", ("11", "13"))
    # 1.1.0 released through relctl: the journal's last good release, which failback
    # puts back on the primaries.
    _must(relctl(state, "apply", str(release(folder, password_file, passfile, base)), "--yes"),
          "relctl apply")
    # The standby first: backup-1's own cluster has no database ledger until then.
    built = _must(relctl(state, "replicate", "--plan", str(plan), "--json"), "replicate")
    deploy("app_backup", (*(str(13 + n) for n in range(backups)), "11"))
    return BuiltSite(plan, password, int(reported["port"]), json.loads(built.stdout))


def release(folder: Path, password_file: Path, passfile: Path, base: str) -> Path:
    """The PostgreSQL example manifest of 1.1.0 for this lab: the database on primary-1's
    cluster, the URL listing both clusters, no load gate (test_release proves it)."""
    examples = ROOT / "examples" / "releases" / "postgresql"
    data = yaml.safe_load((examples / "ledger-1.1.0.yml").read_text())
    for item in data["items"]:
        if "source" in item:
            item["source"] = str((examples / item["source"]).resolve())
        if item["kind"] == "data":
            item["postgresql"] |= {"host": f"{base}11", "password_file": str(password_file)}
            item["postgresql"].pop("password_env")
    data["playbooks"]["apply"] = [str((examples / p).resolve())
                                  for p in data["playbooks"]["apply"]]
    for gate in data["gates"]["testinfra"]:
        gate["tests"] = str((examples / gate["tests"]).resolve())
    data["gates"]["locust"] = None  # continuity is under test, not the load gate
    data["extravars"] = {"ledger_version": "1.1.0",
                         "ledger_database": url("11", "13", base=base),
                         "ledger_db_passfile": str(passfile)}
    path = folder / "ledger-1.1.0.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
