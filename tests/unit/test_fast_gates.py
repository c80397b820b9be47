"""The testinfra gate's pure parts: ssh commands from inventory settings, host groups,
and the merge of the groups' JUnit files into one."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from controller.adapters.connections import Connection, resolve_connections
from controller.adapters.testinfra import merge_junit, parse_junit, split_hosts

ANSIBLE_CFG = """[defaults]
remote_user = ops
timeout = 15
[ssh_connection]
ssh_args = -o ControlMaster=auto -o ControlPersist=120s
control_path_dir = /state/cp
control_path = %(directory)s/%%C
"""
INVENTORY = """all:
  hosts:
    web-1: {ansible_host: 10.0.0.5, ansible_port: 2222, ansible_user: deploy,
            ansible_ssh_private_key_file: /keys/id,
            ansible_ssh_common_args: "-o ProxyJump=bastion", ansible_become: "yes"}
    web-2: {}
    box: {ansible_connection: docker}
    pw: {ansible_password: secret}
    su: {ansible_become: true, ansible_become_method: su}
"""


def _connections(tmp_path: Path, hosts: list[str]) -> dict[str, Connection]:
    (tmp_path / "ansible.cfg").write_text(ANSIBLE_CFG)
    (tmp_path / "hosts.yml").write_text(INVENTORY)
    return dict(resolve_connections(tmp_path / "hosts.yml", tmp_path / "ansible.cfg", hosts,
                                    tmp_path / "cache"))


def test_ssh_commands_are_ansibles_own_and_honour_the_inventory(tmp_path: Path) -> None:
    """Ansible's ssh plugin builds the command: host, port, user, key, common args, the
    ControlPath of its masters; become is sudo as root."""
    found = _connections(tmp_path, ["web-1", "web-2"])
    web1, web2 = found["web-1"], found["web-2"]
    argv = " ".join(web1.argv).replace('"', "")  # Ansible quotes values, ssh unquotes
    for option in ("ControlPersist=120s", "Port=2222", "User=deploy", "ProxyJump=bastion",
                   "ConnectTimeout=15", "ControlPath=/state/cp/%C"):
        assert option in argv, option
    assert "IdentityFile=/keys/id" in argv
    assert web1.argv[-1] == "10.0.0.5" and web1.become and web1.become_user == "root"
    assert 'User="ops"' in web2.argv and web2.argv[-1] == "web-2" and not web2.become
    assert len(list((tmp_path / "cache").iterdir())) == 1  # asked once, then cached


def test_hosts_ssh_cannot_reach_as_ansible_would_go_through_ansible(tmp_path: Path) -> None:
    assert _connections(tmp_path, ["box", "pw", "su"]) == {}


def test_split_hosts_is_bounded_ordered_and_complete() -> None:
    hosts = [f"h{i}" for i in range(10)]
    groups = split_hosts(hosts, 8)
    assert len(groups) == 8 and [h for g in groups for h in g] == hosts
    assert split_hosts(hosts[:3], 8) == [["h0"], ["h1"], ["h2"]]
    assert split_hosts(hosts[:3], 1) == [hosts[:3]]


def _report(path: Path, cases: dict[str, str | None]) -> Path:
    suite = ET.Element("testsuite")
    for name, failure in cases.items():
        case = ET.SubElement(suite, "testcase", classname="t", name=name, time="0.5")
        if failure:
            ET.SubElement(case, "failure", message=failure)
    root = ET.Element("testsuites")
    root.append(suite)
    ET.ElementTree(root).write(path)
    return path


def test_merge_keeps_every_case_and_its_id(tmp_path: Path) -> None:
    one = _report(tmp_path / "0.xml", {"test_a[ansible://h1]": None,
                                       "test_b[ansible://h1]": "boom"})
    two = _report(tmp_path / "1.xml", {"test_a[ansible://h2]": "bad version",
                                       "test_b[ansible://h2]": None})
    merge_junit([(one, ["h1"], 1), (two, ["h2"], 1)], tmp_path / "gate.xml")
    result = parse_junit(tmp_path / "gate.xml")
    assert (result.tests, result.failures) == (4, 2)
    assert result.failed == ["test_b[ansible://h1]: boom",
                             "test_a[ansible://h2]: bad version"]
    suite = ET.parse(tmp_path / "gate.xml").getroot().find("testsuite")
    assert suite is not None and suite.get("tests") == "4" and suite.get("failures") == "2"


def test_a_group_without_report_fails_the_gate_naming_its_hosts(tmp_path: Path) -> None:
    one = _report(tmp_path / "0.xml", {"test_a[ansible://h1]": None})
    merge_junit([(one, ["h1"], 0), (tmp_path / "1.xml", ["h2", "h3"], -15)],
                tmp_path / "gate.xml")
    result = parse_junit(tmp_path / "gate.xml")
    assert result.failures == 1
    assert result.failed[0].startswith("pytest[ansible://h2,ansible://h3]: pytest ended "
                                       "with exit code -15")


def test_no_report_at_all_leaves_no_file(tmp_path: Path) -> None:
    merge_junit([(tmp_path / "0.xml", ["h1"], -9)], tmp_path / "gate.xml")
    assert parse_junit(tmp_path / "gate.xml").tests == 0
