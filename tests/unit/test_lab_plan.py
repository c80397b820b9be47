"""The lab plan as data: addresses, groups and rendered files, without starting anything."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from controller.models.lab import LabService, LabSpec, LabState
from controller.planning import lab as plan
from tests.relctl_cli import relctl

LAYOUT = plan.LabLayout(Path("/var/tmp/relctl/lab"))


def test_hosts_take_consecutive_loopback_addresses_after_the_lb() -> None:
    hosts = plan.plan_hosts(LabSpec(primary=2, backup=1, base_address="127.0.0.250"))
    assert [(h.name, h.group, h.address) for h in hosts] == [
        ("lb-1", "lb", "127.0.0.250"),
        ("primary-1", "app_primary", "127.0.0.251"),
        ("primary-2", "app_primary", "127.0.0.252"),
        ("backup-1", "app_backup", "127.0.0.253"),
    ]


def test_a_hundred_hosts_fit_and_cross_into_the_next_octet() -> None:
    hosts = plan.plan_hosts(LabSpec(primary=80, backup=40, base_address="127.0.0.200"))
    assert len(hosts) == 121
    assert hosts[-1].address == "127.0.1.64"
    assert len({h.address for h in hosts}) == 121


@pytest.mark.parametrize("address", ["10.0.0.1", "192.168.1.10", "::1"])
def test_addresses_outside_loopback_are_refused(address: str) -> None:
    with pytest.raises(ValidationError, match="loopback"):
        LabSpec(base_address=address)


def test_inventory_groups_and_connection_settings() -> None:
    spec = LabSpec(primary=2, backup=2)
    state = LabState(spec=spec, hosts=plan.plan_hosts(spec))
    inventory = plan.render_inventory(LAYOUT, state)["all"]
    children = inventory["children"]
    assert list(children["lb"]["hosts"]) == ["lb-1"]
    app = children["app"]["children"]
    assert list(app["app_primary"]["hosts"]) == ["primary-1", "primary-2"]
    assert list(app["app_backup"]["hosts"]) == ["backup-1", "backup-2"]
    assert app["app_primary"]["hosts"]["primary-2"] == {"ansible_host": "127.0.0.12"}
    assert inventory["vars"]["ansible_port"] == 2222
    assert inventory["vars"]["ansible_ssh_private_key_file"] == str(LAYOUT.client_key)


def test_ansible_cfg_is_tuned_and_keeps_control_sockets_in_the_state_dir() -> None:
    cfg = plan.render_ansible_cfg(LAYOUT, size=30)
    assert "pipelining = True" in cfg
    assert "ControlPersist=" in cfg
    assert f"control_path_dir = {LAYOUT.control_dir}" in cfg
    assert "forks = 30" in cfg
    assert "StrictHostKeyChecking=yes" in cfg


def test_forks_follow_the_fleet_within_bounds() -> None:
    assert [plan.forks_for(n) for n in (1, 12, 500)] == [5, 12, 50]


def test_each_host_gets_its_own_trees_and_runtime_dirs() -> None:
    host = plan.plan_hosts(LabSpec())[1]
    script = plan.launch_command(LAYOUT, host)[-1]
    for tree in plan.PRIVATE:
        assert f"mount --bind {LAYOUT.private(host.name, tree)} {tree};" in script
    for tree in plan.OVERLAID:
        upper = LAYOUT.upper(host.name, tree)
        assert f"lowerdir={tree},upperdir={upper}," in script
    assert script.index("install -d -m 0755 -o root -g root /run/sshd") > script.index("/run;")
    assert script.endswith(f"-f {LAYOUT.sshd_config(host.name)}")
    assert "hostname primary-1" in script


def test_the_tree_holding_the_lab_is_overlaid_last() -> None:
    assert plan.overlay_order(Path("/var/tmp/relctl/lab"))[-1] == "/var"
    assert plan.overlay_order(Path("/root/.local/state/relctl/lab"))[-1] == "/root"
    assert plan.overlay_order(Path("/data/lab")) == list(plan.OVERLAID)


def test_services_get_frontends_in_order_and_generic_inventory_vars() -> None:
    web = LabService.parse("web:8080/healthz").model_copy(update={"balance": "roundrobin"})
    spec = LabSpec(services=(web, LabService.parse("api:9000")))
    state = LabState(spec=spec, hosts=plan.plan_hosts(spec))
    variables = plan.render_inventory(LAYOUT, state)["all"]["vars"]
    assert variables["lb_services"] == [
        {"name": "web", "port": 8080, "frontend_port": 8000, "health_path": "/healthz",
         "balance": "roundrobin"},
        {"name": "api", "port": 9000, "frontend_port": 8001, "health_path": None,
         "balance": "first"},
    ]
    assert variables["service_manager"] == "script"
    assert state.url == "http://127.0.0.10:8000"


@pytest.mark.parametrize("text", ["web", "web:", "Web:80", "web:80:90", "web:8o", "w b:80",
                                  "web:80 /x", "web:80health"])
def test_bad_service_options_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="NAME:PORT"):
        LabService.parse(text)


@pytest.mark.parametrize(("services", "message"), [
    (("web:80", "web:81"), "named twice"),
    (("web:2222",), "ssh port"),
    (("web:80", "api:9999"), "runtime API port"),
])
def test_colliding_services_are_refused(services: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LabSpec(services=tuple(LabService.parse(s) for s in services))


def test_round_robin_names_a_service_of_the_lab(tmp_path: Path) -> None:
    alone = relctl(tmp_path / "state", "lab", "up", "--round-robin", "web", timeout=60)
    assert alone.returncode == 2 and "needs the --service it balances" in alone.stderr
    unknown = relctl(tmp_path / "state", "lab", "up", "--service", "web:8080/health",
                     "--round-robin", "api", timeout=60)
    assert unknown.returncode == 2 and "--round-robin api: not a --service" in unknown.stderr
    assert not (tmp_path / "state" / "lab").exists()  # nothing started, nothing written
