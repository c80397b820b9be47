"""The staging lab as data: what was asked for, and what is running."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

LabGroup = Literal["lb", "app_primary", "app_backup"]
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
MAX_HOSTS = 250


class LabSpec(BaseModel):
    """What the operator asked for with ``relctl lab up``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    primary: int = Field(3, ge=1, description="Hosts in the primary site (group app_primary).")
    backup: int = Field(2, ge=0, description="Hosts in the backup site (group app_backup).")
    base_address: str = Field(
        "127.0.0.10", description="Loopback address of the load balancer; hosts follow it."
    )
    ssh_port: int = Field(2222, ge=1, le=65535, description="Port every lab sshd listens on.")
    app_port: int = Field(8080, ge=1, le=65535, description="Port the app listens on per host.")
    lb_port: int = Field(8000, ge=1, le=65535, description="HAProxy frontend port.")
    lb_admin_port: int = Field(9999, ge=1, le=65535, description="HAProxy runtime API port.")
    apps: tuple[str, ...] = Field(
        ("ledger", "haproxy"), description="Apps that get private /etc, /var/lib, /var/log, /run."
    )

    @field_validator("base_address")
    @classmethod
    def _loopback_only(cls, value: str) -> str:
        address = ipaddress.ip_address(value)
        if address not in LOOPBACK:
            raise ValueError(f"{value} is not a loopback address (127.0.0.0/8)")
        return value

    @model_validator(mode="after")
    def _fits(self) -> LabSpec:
        total = 1 + self.primary + self.backup
        if total > MAX_HOSTS:
            raise ValueError(f"{total} hosts asked for; the lab runs at most {MAX_HOSTS}")
        last = ipaddress.ip_address(self.base_address) + (total - 1)
        if last not in LOOPBACK:
            raise ValueError(f"{total} hosts from {self.base_address} leave 127.0.0.0/8")
        return self

    @property
    def size(self) -> int:
        """Number of hosts, the load balancer included."""
        return 1 + self.primary + self.backup


class LabHost(BaseModel):
    """One planned lab host."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    group: LabGroup
    address: str
    ssh_port: int


class HostProcess(BaseModel):
    """The processes that embody one running lab host."""

    model_config = ConfigDict(extra="forbid")

    unshare_pid: int = Field(description="The unshare process in the machine's namespace.")
    sshd_pid: int = Field(description="sshd, PID 1 of the host's own PID namespace.")
    sshd_started: float = Field(description="sshd's create_time, to tell a reused pid.")


class LabState(BaseModel):
    """What ``lab up`` started, saved as ``lab.json`` in the lab directory."""

    model_config = ConfigDict(extra="forbid")

    spec: LabSpec
    hosts: list[LabHost]
    processes: dict[str, HostProcess] = Field(default_factory=dict)

    def host(self, name: str) -> LabHost:
        """The host called ``name``."""
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(name)

    @property
    def lb(self) -> LabHost:
        """The load balancer host."""
        return next(h for h in self.hosts if h.group == "lb")

    @property
    def url(self) -> str:
        """The load balancer's frontend URL."""
        return f"http://{self.lb.address}:{self.spec.lb_port}"
