"""Where a release runs: its inventory, Ansible config, load balancer URL and stores."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from controller.adapters import ssh
from controller.adapters.ansible import list_hosts
from controller.errors import InputError
from controller.journal import Journal
from controller.models.lab import LabState
from controller.models.manifest import Manifest
from controller.paths import private_state_dir
from controller.planning.lab import LabLayout

JOURNAL_ENV = "RELCTL_JOURNAL"


def children_dir(state_dir: Path) -> Path:
    """Where relctl's launchers write the pids of the children they start."""
    return state_dir / "children"


@dataclass(frozen=True)
class Environment:
    """The targets of one release and relctl's stores for it."""

    state_dir: Path
    inventory: Path
    ansible_cfg: Path
    lb_url: str | None

    @property
    def runs_dir(self) -> Path:
        return self.state_dir / "runs"

    def snapshot_dir(self, release_id: int) -> Path:
        return self.state_dir / "snapshots" / str(release_id)

    @property
    def children_dir(self) -> Path:
        return children_dir(self.state_dir)

    @property
    def connections_dir(self) -> Path:
        """Where the ssh command lines Ansible resolved for the hosts are cached."""
        return self.state_dir / "connections"

    def gate_dir(self, release_id: int) -> Path:
        return self.state_dir / "gates" / str(release_id)

    def hosts(self, pattern: str) -> list[str]:
        """The inventory hosts matching ``pattern``; ``InputError`` when there are none."""
        hosts = list_hosts(self.inventory, self.ansible_cfg, pattern)
        if not hosts:
            raise InputError(f"no host in {self.inventory} matches targets {pattern!r}")
        return hosts

    def close_connections(self) -> None:
        """Close the ssh ControlPersist masters relctl's runs left behind (gracefully:
        another run's tasks through them end first)."""
        ssh.close_control_masters(self.ansible_cfg.parent / "cp", graceful=True)


def resolve_environment(state_dir: Path, manifest: Manifest,
                        inventory: Path | None = None) -> Environment:
    """The manifest's inventory (or ``inventory``), else the staging lab's."""
    return environment_for(state_dir, inventory or manifest.inventory, "the manifest",
                           manifest.service)


def environment_for(state_dir: Path, chosen: Path | None, named_by: str,
                    service: str) -> Environment:
    """The inventory ``chosen`` (with the ansible.cfg beside it), else the staging lab's.

    The load balancer URL is the lab's frontend of ``service`` (else its first one).
    """
    private_state_dir(state_dir)  # the CLI made it private already, and told of it
    lab = LabLayout(state_dir / "lab")
    if chosen is None:
        if not lab.inventory.exists():
            raise InputError(f"{named_by} names no inventory and no lab is up",
                             hint="pass --inventory, or run: relctl lab up")
        chosen = lab.inventory
    cfg = lab.ansible_cfg if chosen == lab.inventory else Path(
        os.environ.get("ANSIBLE_CONFIG", chosen.parent / "ansible.cfg"))
    return Environment(state_dir, Path(chosen), cfg, _lab_url(lab, service)
                       if lab.state_file.exists() else None)


def _lab_url(lab: LabLayout, service: str) -> str | None:
    state = LabState.model_validate_json(lab.state_file.read_text())
    urls = {fronted.name: fronted.url for fronted in state.services}
    return urls.get(service, state.url)


def open_journal(state_dir: Path, override: str | Path | None = None) -> Journal:
    """The journal: ``override``, else ``$RELCTL_JOURNAL``, else ``STATE_DIR/journal.sqlite``.

    A path or ``sqlite:PATH`` is an SQLite file (its folder is created; a bad path is
    refused, exit 2); ``postgresql://…`` a shared database (exit 7 when unreachable)."""
    target = override or os.environ.get(JOURNAL_ENV) or state_dir / "journal.sqlite"
    return Journal(target)
