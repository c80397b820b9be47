"""How Ansible would reach each host: run as ``python -m controller.adapters.ansible_connections
INVENTORY HOST...`` (with ``ANSIBLE_CONFIG`` set), prints one JSON object per host.

It asks Ansible itself: the inventory and its group/host variables through Ansible's
variable manager, and the ssh command line from Ansible's own ssh connection plugin
(``_build_command``: ssh_args, port, user, key, timeouts, common and extra args, and the
ControlPath of the ControlPersist masters Ansible opens). So relctl's lean transport
(``adapters/agent_transport.py``) reuses the very connections Ansible opened and honours
every setting Ansible would. A host it cannot reach that way (another connection
plugin, a password, an unknown become method) is marked ``"lean": false`` with the
reason, and relctl reaches it through Ansible instead.

This is a separate process because importing Ansible costs a second; relctl keeps the
answer in its store until the inventory or its configuration changes.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from ansible import constants as C  # noqa: N812 - Ansible's own name
from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
from ansible.playbook.play_context import PlayContext
from ansible.plugins.loader import connection_loader, init_plugin_loader
from ansible.template import Templar
from ansible.vars.manager import VariableManager

SSH_PLUGINS = ("ssh", "smart", "ansible.builtin.ssh")
BECOME_METHODS = ("sudo",)


def _resolve(name: str, hostvars: dict[str, Any], templar: Any) -> dict[str, Any]:
    def var(key: str, default: Any = None) -> Any:
        value = hostvars.get(key, default)
        return templar.template(value) if isinstance(value, str) else value

    kind = str(var("ansible_connection", C.DEFAULT_TRANSPORT))
    become = bool(var("ansible_become", C.DEFAULT_BECOME))
    method = str(var("ansible_become_method", C.DEFAULT_BECOME_METHOD))
    interpreter = str(var("ansible_python_interpreter",
                          C.config.get_config_value("INTERPRETER_PYTHON", variables=hostvars)))
    answer: dict[str, Any] = {"host": name, "lean": False, "become": become,
                              "become_user": str(var("ansible_become_user", "root") or "root"),
                              "interpreter": None if interpreter.startswith("auto")
                              else interpreter}
    if kind not in SSH_PLUGINS:
        return {**answer, "reason": f"connection {kind}"}
    if become and method not in BECOME_METHODS:
        return {**answer, "reason": f"become method {method}"}
    if become and (var("ansible_become_password") or var("ansible_become_pass")):
        return {**answer, "reason": "a become password"}
    conn = connection_loader.get("ssh", PlayContext(), None)
    conn.set_options(var_options={k: var(k) for k in hostvars if k.startswith("ansible_")}
                     | {"inventory_hostname": name})
    if conn.get_option("password") or conn.get_option("private_key"):
        return {**answer, "reason": "a password or an in-memory private key"}
    conn.host = conn.get_option("host") or name
    argv = [a.decode() for a in conn._build_command(conn.get_option("ssh_executable"), "ssh")]
    return {**answer, "lean": True, "argv": [*argv, conn.host]}


def main(argv: list[str]) -> int:
    init_plugin_loader()
    loader = DataLoader()
    inventory = InventoryManager(loader=loader, sources=[argv[1]])
    variables = VariableManager(loader=loader, inventory=inventory)
    answers = {}
    for name in argv[2:]:
        hostvars = variables.get_vars(host=inventory.get_host(name))
        try:
            answers[name] = _resolve(name, hostvars, Templar(loader, variables=hostvars))
        except Exception as exc:  # any surprise: reach the host through Ansible
            answers[name] = {"host": name, "lean": False, "reason": f"{type(exc).__name__}: "
                             f"{exc}"}
    print(json.dumps(answers))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
