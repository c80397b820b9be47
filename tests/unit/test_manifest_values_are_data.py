"""Manifest text is data, and the settings relctl gives ansible-playbook (issue 25):

- extra variables go to Ansible as ``!unsafe`` YAML: Ansible's own loader and templating
  give back the text as written, a ``lookup('pipe', ...)`` in it runs nothing;
- ansible-playbook's environment keeps the user's host key setting (ansible-runner's
  ``ANSIBLE_HOST_KEY_CHECKING=False`` is not added) and leaves out relctl's own
  variables; the run's ``command`` artifact keeps no value of the controller's
  environment;
- the lab's ``--service`` health path is a plain URL path, written ``!unsafe`` too.

Real ansible-playbook runs of all this are in tests/integration/test_values_are_data.py.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Any

import pytest
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

from controller.adapters.ansible import (
    HOST_KEY_CHECKING,
    NOT_RECORDED,
    child_environment,
    recorded_environment,
)
from controller.adapters.ansible_vars import extravars_yaml
from controller.engine.lab import inventory_text
from controller.models.lab import LabService, LabSpec, LabState
from controller.planning import lab as plan


def templated(document: str, expression: str) -> Any:
    """``expression`` (trusted, as a playbook's text is) templated by Ansible with the
    variables of ``document`` loaded as Ansible loads an ``-e @file`` or an inventory."""
    loader = DataLoader()
    variables = loader.load(document)
    templar = Templar(loader=loader, variables=variables)
    return templar.template(trust_as_template(expression))


def test_an_extravar_template_is_text_to_ansible(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    version = "{{ lookup('pipe', 'id > " + str(marker) + "; echo 1.0.0') }}"
    document = extravars_yaml({"app_version": version, "deep": {"{{ k }}": ["{{ 6 * 7 }}"]},
                               "count": 3, "on": True, "none": None})
    assert templated(document, "{{ app_version }}") == version
    assert templated(document, "{{ deep['{{ k }}'][0] }}") == "{{ 6 * 7 }}"
    assert templated(document, "{{ count + 1 }}") == 4
    assert templated(document, "{{ on and none is none }}") is True
    assert not marker.exists()


def test_enum_values_are_written_as_their_plain_type() -> None:
    class Level(enum.IntEnum):
        HIGH = 3

    assert templated(extravars_yaml({"n": Level.HIGH, "b": False}), "{{ n + 1 }}") == 4


@pytest.mark.parametrize("text", ["{{ x }}", "{% if 1 %}y{% endif %}", "{# c #}", "'\"\\\n",
                                  "!unsafe", "@file", "-e x=1", "é ✓", "", "1.10", "0",
                                  "yes", "null", "~", "2024-01-01", "1e3", "#jinja2:x:y\n{{ v }}",
                                  " {{ v }} "])
def test_any_text_comes_back_as_written(text: str) -> None:
    assert templated(extravars_yaml({"v": text}), "{{ v }}") == text


def test_runner_host_key_default_is_dropped_and_relctl_secrets_stay_home() -> None:
    prepared = {"PATH": "/bin", HOST_KEY_CHECKING: "False", "RELCTL_JOURNAL": "pg://u:pw@h/d",
                "RELCTL_CHILD_RECORD": "/run/x", "RELCTL_LAB_PG_PASSWORD": "pw"}
    explicit = {"PATH": "/bin", "RELCTL_CHILD_RECORD": "/run/x"}
    env = child_environment(prepared, explicit,
                            controller={"RELCTL_LAB_PG_PASSWORD": "pw", "RELCTL_JOURNAL": "x"})
    # a password_env (any name) stays readable by the playbook; the journal URL does not
    assert env == {"PATH": "/bin", "RELCTL_CHILD_RECORD": "/run/x",
                   "RELCTL_LAB_PG_PASSWORD": "pw"}


def test_a_host_key_setting_of_the_user_is_kept() -> None:
    prepared = {HOST_KEY_CHECKING: "False"}
    env = child_environment(prepared, {}, controller={HOST_KEY_CHECKING: "False"})
    assert env == {HOST_KEY_CHECKING: "False"}


def test_the_command_artifact_keeps_no_value_of_the_controller_environment() -> None:
    env = {"PATH": "/tools", "DB_PASSWORD": "pw", "HOME": "/root",
           "ANSIBLE_STDOUT_CALLBACK": "awx_display"}
    recorded = recorded_environment(env, explicit={"PATH": "/tools"},
                                    controller={"PATH": "/bin", "DB_PASSWORD": "pw",
                                                "HOME": "/root"})
    assert recorded == {"PATH": "/tools", "DB_PASSWORD": NOT_RECORDED, "HOME": NOT_RECORDED,
                        "ANSIBLE_STDOUT_CALLBACK": "awx_display"}


@pytest.mark.parametrize("text", ["web:80/{{lookup('pipe','id')}}", "web:80/{%x%}",
                                  "web:80/a#b", "web:80/a\"b", "web:80/a'b", "web:80/a\\b",
                                  "web:80/${HOME}", "web:80/a`id`"])
def test_a_health_path_is_a_plain_url_path(text: str) -> None:
    with pytest.raises(ValueError, match="NAME:PORT"):
        LabService.parse(text)


@pytest.mark.parametrize("path", ["/health", "/healthz?full=1&x=y", "/a/b-c_d.e~f%20", "/"])
def test_usual_health_paths_are_accepted(path: str) -> None:
    assert LabService.parse(f"web:80{path}").health_path == path


def test_the_lab_inventory_gives_the_services_as_data(tmp_path: Path) -> None:
    """Even a service that skipped validation (a hand-edited lab.json) is data."""
    marker = tmp_path / "marker"
    path = "/{{ lookup('pipe', 'touch " + str(marker) + "') }}"
    service = LabService.model_construct(name="web", port=8080, health_path=path)
    spec = LabSpec(services=(service,))
    state = LabState(spec=spec, hosts=plan.plan_hosts(spec))
    text = inventory_text(plan.LabLayout(tmp_path), state)
    assert templated(text, "{{ all['vars']['lb_services'][0]['health_path'] }}") == path
    assert templated(text, "{{ all['vars']['lb_services'][0]['port'] + 1 }}") == 8081
    assert templated(text, "{{ all['vars']['ansible_port'] }}") == 2222
    assert not marker.exists()
