"""relctl's pytest plugin for the testinfra gate: ``ansible://HOST`` over open ssh connections.

Loaded into each gate pytest with ``-p controller.adapters.testinfra_plugin``. The
controller resolves the inventory once per gate and writes, for every host, the ssh
command Ansible builds (``adapters/connections.py``) and the host's variables to the
JSON file named by ``$RELCTL_TESTINFRA_TARGETS``. This plugin then puts its own class
under testinfra's backend name ``ansible`` (testinfra's name -> class table), so that:

- test ids stay ``test_x[ansible://HOST]``, as in every earlier gate run;
- ``host.run`` goes over the ControlPersist socket Ansible opened (one ssh round trip,
  no new connection, no ``ansible-inventory`` in each pytest);
- ``host.ansible.get_variables()`` answers from the inventory the controller read, and
  ``host.ansible(...)`` still runs Ansible modules;
- a host without an ssh command (another connection plugin, a password) is run through
  testinfra's own ansible backend, as before.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any

import pytest
import testinfra.backend
from testinfra.backend.ansible import AnsibleBackend
from testinfra.backend.base import CommandResult

TARGETS_ENV = "RELCTL_TESTINFRA_TARGETS"


@functools.cache
def targets() -> dict[str, dict[str, Any]]:
    """Host name -> {"argv": [...] | None, "become", "become_user", "variables"}."""
    path = os.environ.get(TARGETS_ENV)
    if not path:
        return {}
    with open(path, encoding="utf-8") as handle:
        data: dict[str, dict[str, Any]] = json.load(handle)
    return data


class InventoryBackend(AnsibleBackend):  # type: ignore[misc]  # testinfra is untyped
    """testinfra's ansible backend, with commands over the host's ssh command."""

    def __init__(self, host: str, *args: Any, **kwargs: Any) -> None:
        self.target = targets().get(host)
        if self.target and self.target["argv"]:
            kwargs["sudo"] = kwargs.get("sudo") or self.target["become"]
            kwargs["sudo_user"] = kwargs.get("sudo_user") or self.target["become_user"]
        super().__init__(host, *args, **kwargs)

    @classmethod
    def get_hosts(cls, host: str, **kwargs: Any) -> list[str]:
        if host in targets():
            return [host]
        return AnsibleBackend.get_hosts(host, **kwargs)  # type: ignore[no-any-return]

    def run(self, command: str, *args: str, **kwargs: Any) -> CommandResult:
        if not self.target or not self.target["argv"] or self.force_ansible:
            return super().run(command, *args, **kwargs)
        command = self.get_command(command, *args)
        argv = [*self.target["argv"], command]
        out = self.run_local(" ".join(["%s"] * len(argv)), *argv)
        out.command = self.encode(command)
        if out.rc == 255:  # ssh's own failure, not the command's
            raise RuntimeError(out)
        return out

    def get_variables(self) -> dict[str, Any]:
        if self.target:
            return dict(self.target["variables"])
        return super().get_variables()  # type: ignore[no-any-return]


def pytest_configure(config: pytest.Config) -> None:
    """Serve ``ansible://`` hosts with ``InventoryBackend`` when the controller wrote targets."""
    if targets():
        testinfra.backend.BACKENDS["ansible"] = f"{__name__}.{InventoryBackend.__name__}"
