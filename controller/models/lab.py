"""The staging lab as data: what was asked for, and what is running."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

LabGroup = Literal["lb", "app_primary", "app_backup"]
Balance = Literal["first", "roundrobin"]
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
MAX_HOSTS = 250
SERVICE_NAME = r"[a-z][a-z0-9_-]{0,39}"
# A URL path (and query) of plain characters: it is written into haproxy.cfg by a Jinja
# template, so no braces, quotes, backslash, '#' or '$' (HAProxy's comment and variables).
HEALTH_PATH = r"/[A-Za-z0-9._~%!&*+,;=:@/?-]*"
SERVICE_SPEC = re.compile(
    rf"^(?P<name>{SERVICE_NAME}):(?P<port>[0-9]{{1,5}})(?P<path>{HEALTH_PATH})?$"
)


class LabService(BaseModel):
    """A service the lab's load balancer fronts: its own frontend and backend."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=rf"^{SERVICE_NAME}$",
                      description="Service name; also the HAProxy backend's name.")
    port: int = Field(ge=1, le=65535, description="Port the service listens on, per host.")
    health_path: str | None = Field(
        None, pattern=rf"^{HEALTH_PATH}$",
        description="HTTP path HAProxy checks (200 = healthy); none: a TCP connect check.")
    balance: Balance = Field(
        "first", description="first: active/standby, the first healthy primary takes all "
        "the traffic (one writer); roundrobin: active/active, every healthy primary in turn.")

    @classmethod
    def parse(cls, text: str) -> LabService:
        """``NAME:PORT`` or ``NAME:PORT/HEALTH/PATH``, as given to ``--service``."""
        match = SERVICE_SPEC.match(text)
        if match is None:
            raise ValueError(
                f"--service {text!r}: expected NAME:PORT or NAME:PORT/health-path "
                "(NAME: lowercase letters, digits, - and _), e.g. billing:9090/health"
            )
        return cls(name=match["name"], port=int(match["port"]), health_path=match["path"])


class LabSpec(BaseModel):
    """What the operator asked for with ``relctl lab up``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    primary: int = Field(3, ge=1, description="Hosts in the primary site (group app_primary).")
    backup: int = Field(2, ge=0, description="Hosts in the backup site (group app_backup).")
    base_address: str = Field(
        "127.0.0.10", description="Loopback address of the load balancer; hosts follow it."
    )
    ssh_port: int = Field(2222, ge=1, le=65535, description="Port every lab sshd listens on.")
    lb_port: int = Field(
        8000, ge=1, le=65535,
        description="HAProxy frontend port of the first service; the next ones follow it.")
    lb_admin_port: int = Field(9999, ge=1, le=65535, description="HAProxy runtime API port.")
    services: tuple[LabService, ...] = Field(
        (), description="Services the load balancer fronts, each on its own frontend port.")
    postgresql: bool = Field(
        False, description="Each app host also runs its own PostgreSQL cluster on its own "
                           "address (data in its own /var/lib/postgresql/lab).")
    postgresql_port: int = Field(5432, ge=1, le=65535,
                                 description="Port of every host's PostgreSQL cluster.")

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
        self._check_services()
        return self

    def _check_services(self) -> None:
        names = [s.name for s in self.services]
        if len(set(names)) != len(names):
            raise ValueError(f"services named twice: {', '.join(names)}")
        fixed = {self.ssh_port: "the ssh port", self.lb_admin_port: "the runtime API port"}
        if self.postgresql:
            fixed[self.postgresql_port] = "the PostgreSQL port"
        for service, frontend in zip(self.services, self.frontend_ports, strict=True):
            if frontend > 65535:
                raise ValueError(f"service {service.name}: frontend port {frontend} > 65535")
            for port in (frontend, service.port):
                if port in fixed:
                    raise ValueError(f"service {service.name}: port {port} is {fixed[port]}")

    @property
    def frontend_ports(self) -> list[int]:
        """The load balancer's frontend port of each service, in order."""
        return [self.lb_port + index for index in range(len(self.services))]

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
    def services(self) -> list[FrontedService]:
        """Each service the load balancer fronts, with its frontend port and URL."""
        spec = self.spec
        return [
            FrontedService(name=service.name, port=port, url=f"http://{self.lb.address}:{port}",
                           host_port=service.port, health_path=service.health_path,
                           balance=service.balance)
            for service, port in zip(spec.services, spec.frontend_ports, strict=True)
        ]

    @property
    def url(self) -> str | None:
        """The first service's URL through the load balancer (None: no service fronted)."""
        return self.services[0].url if self.services else None


@dataclass(frozen=True)
class FrontedService:
    """A service as the lab's load balancer serves it."""

    name: str
    port: int
    url: str
    host_port: int
    health_path: str | None
    balance: Balance = "first"
