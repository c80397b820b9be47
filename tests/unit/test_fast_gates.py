"""The testinfra gate's pure parts: ssh commands from inventory settings, host groups,
and the merge of the groups' JUnit files into one."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from controller.adapters.ssh_targets import SshConfig, control_path, ssh_target
from controller.adapters.testinfra import merge_junit, parse_junit, split_hosts

LAB = SshConfig(ssh_args="-o ControlMaster=auto -o ControlPersist=120s",
                control_path="%(directory)s/%%C", control_path_dir="/state/cp", timeout=15)


def test_ssh_target_honours_the_inventory_and_reuses_ansibles_socket() -> None:
    hostvars = {"ansible_host": "10.0.0.5", "ansible_port": 2222, "ansible_user": "deploy",
                "ansible_ssh_private_key_file": "/keys/id", "ansible_ssh_common_args":
                "-o ProxyJump=bastion", "ansible_become": "yes"}
    target = ssh_target("web-1", hostvars, LAB)
    assert target is not None
    assert target.argv == [
        "ssh", "-o", "ControlMaster=auto", "-o", "ControlPersist=120s", "-o", "Port=2222",
        "-o", "IdentityFile=/keys/id", "-o", "User=deploy", "-o", "ConnectTimeout=15",
        "-o", "ProxyJump=bastion", "-o", "ControlPath=/state/cp/%C", "10.0.0.5"]
    assert target.become and target.become_user is None


def test_ssh_target_defaults_follow_ansible() -> None:
    target = ssh_target("web-1", {}, SshConfig(remote_user="ops", host_key_checking=False))
    assert target is not None
    digest = control_path(SshConfig(), "web-1", None, "ops")
    assert target.argv == ["ssh", "-C", "-o", "ControlMaster=auto", "-o", "ControlPersist=60s",
                           "-o", "StrictHostKeyChecking=no", "-o", "User=ops",
                           "-o", "ConnectTimeout=10", "-o", f"ControlPath={digest}", "web-1"]
    assert digest.startswith("~/.ansible/cp/") and len(digest.rsplit("/", 1)[1]) == 10


def test_no_control_path_without_control_persist_nor_over_the_users_own() -> None:
    plain = ssh_target("h", {}, SshConfig(ssh_args="-o IdentitiesOnly=yes"))
    own = ssh_target("h", {"ansible_ssh_extra_args": "-o ControlPath=/mine/%h"}, LAB)
    assert plain is not None and not any("ControlPath" in a for a in plain.argv)
    assert own is not None and [a for a in own.argv if "ControlPath" in a] == [
        "ControlPath=/mine/%h"]


def test_hosts_ssh_cannot_reach_go_through_ansible() -> None:
    assert ssh_target("c", {"ansible_connection": "docker"}, LAB) is None
    assert ssh_target("p", {"ansible_password": "secret"}, LAB) is None
    assert ssh_target("s", {"ansible_become": True, "ansible_become_method": "su"}, LAB) is None


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
