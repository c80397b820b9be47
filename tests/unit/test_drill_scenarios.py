"""Drill scenarios as pure logic: which fault each picks on which inventory, and the
refusals that come before anything is touched (no lab, no host contacted)."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.adapters.ansible import Inventory
from controller.engine.continuity import Continuity, load_plan
from controller.engine.continuity.services import Services
from controller.engine.continuity.site import Site
from controller.engine.continuity.site_data import SiteData
from controller.engine.drill import SCENARIOS, DrillSite, plan_drill
from controller.engine.drill.faults import Fault
from controller.engine.environment import Environment
from controller.engine.lab import Lab
from controller.errors import InputError
from controller.yaml_source import ConfigError

ROOT = Path(__file__).resolve().parents[2]
PLAN = ROOT / "examples" / "continuity" / "ledger-lab.yml"
GROUPS = {"app_primary": ["p1", "p2"], "app_backup": ["b1"], "lb": ["lb1"]}
DECLARED = """  faults:
    site-loss: {inject: "systemctl stop ledger", restore: "systemctl start ledger"}
"""


def context(tmp_path: Path, text: str | None = None) -> Continuity:
    path = tmp_path / "plan.yml"
    path.write_text((text or PLAN.read_text()).replace("../../loadtests",
                                                        str(ROOT / "loadtests")))
    plan, doc = load_plan(path)
    env = Environment(tmp_path, tmp_path / "staging.ini", tmp_path / "ansible.cfg", None)
    addresses = {h: f"127.0.99.{i}" for i, h in enumerate(["p1", "p2", "b1", "lb1"], 1)}
    site = Site(plan, Inventory(GROUPS, addresses), env)
    services = Services(plan, path, env, None, document=doc)  # type: ignore[arg-type]
    return Continuity(services, site, SiteData(site))


def with_drill_lines(extra: str, *, without: str = "") -> str:
    text = PLAN.read_text().replace("  flaps: 3\n", "  flaps: 3\n" + extra)
    return text.replace(without, "") if without else text


def test_every_scenario_is_listed_with_its_summary() -> None:
    assert list(SCENARIOS) == ["site-loss", "host-loss", "service-crash", "lb-backend-flap",
                               "latency"]
    assert all(cls.summary and cls.name == name for name, cls in SCENARIOS.items())


def test_off_the_lab_host_and_site_loss_need_declared_commands(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    lab = Lab(tmp_path / "lab")  # no lab here: the plan's inventory is its own
    for name in ("site-loss", "host-loss", "latency"):
        with pytest.raises(InputError, match=f"drill.faults.{name}"):
            plan_drill(ctx, lab, name)
    # service-crash on the lab's process match only: refused off the lab
    with pytest.raises(InputError, match="pid_file"):
        plan_drill(ctx, lab, "service-crash")


def test_declared_commands_win_and_pid_file_kills_through_ansible(tmp_path: Path) -> None:
    ctx = context(tmp_path, with_drill_lines(DECLARED + "  pid_file: /run/ledger/ledger.pid\n"))
    lab = Lab(tmp_path / "lab")
    loss = plan_drill(ctx, lab, "site-loss")
    assert loss.site.mode == "inventory"
    assert loss.faults == [Fault(h, "command", "systemctl stop ledger", ("command",),
                                 "systemctl start ledger") for h in ("p1", "p2")]
    crash = plan_drill(ctx, lab, "service-crash")
    assert [(f.host, f.channel, f.argument, f.undo) for f in crash.faults] == [
        ("p1", "pid-file", "/run/ledger/ledger.pid", ("restart",))]
    flap = plan_drill(ctx, lab, "lb-backend-flap")
    assert [(f.channel, f.undo) for f in flap.faults] == [("lb-health", ("lb-health-up",))]
    assert Fault.from_dict(loss.faults[0].as_dict()) == loss.faults[0]  # as journaled


def test_on_the_lab_hosts_are_killed_by_recorded_pid(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    site = DrillSite(ctx, Lab(tmp_path / "lab"), state=object())  # type: ignore[arg-type]
    loss = SCENARIOS["site-loss"]().faults(site, ctx.plan.drill)  # type: ignore[arg-type]
    assert [(f.host, f.channel, f.undo) for f in loss] == [
        ("p1", "lab-host", ("lab-up",)), ("p2", "lab-host", ("lab-up",))]
    host = SCENARIOS["host-loss"]().faults(site, ctx.plan.drill)  # type: ignore[arg-type]
    assert [(f.host, f.undo) for f in host] == [("p1", ("lab-up", "restart"))]


@pytest.mark.parametrize(("old", "new", "field", "message"), [
    ("drills: allowed", "drills: forbidden", "drills", "not allowed"),
    ("drills: allowed\n", "", "drills", "not allowed"),
    ("environment: lab", "environment: production", "environment", "--yes-production"),
])
def test_a_drill_needs_the_plans_consent(tmp_path: Path, old: str, new: str, field: str,
                                         message: str) -> None:
    ctx = context(tmp_path, with_drill_lines(DECLARED).replace(old, new))
    with pytest.raises(ConfigError) as refused:
        plan_drill(ctx, Lab(tmp_path / "lab"), "site-loss")
    problem = refused.value.problems[0]
    assert problem.field == field and message in problem.message
    assert problem.file == str(ctx.services.plan_path) and problem.line is not None
    if field == "environment":  # production with the flag: allowed
        assert plan_drill(ctx, Lab(tmp_path / "lab"), "site-loss", yes_production=True)


def test_unknown_scenario_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(InputError) as refused:
        plan_drill(context(tmp_path), Lab(tmp_path / "lab"), "meteor")
    assert "site-loss" in (refused.value.hint or "")
