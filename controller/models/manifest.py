"""A release manifest as data: what to deploy, where, how, and how to tell it worked.

Paths on the controller (playbooks, artifacts, gate tests) are written relative to the
manifest file; validated with a ``{"base_dir": ..., "check_files": True}`` context (what
``controller.manifest_loader`` passes) they become absolute and must exist. Validated
without a context they are kept as written, so code and tests can build manifests freely.
Paths on the managed hosts (``/opt/billing``) are plain absolute POSIX strings.
"""

from __future__ import annotations

import ipaddress
import math
import re
import socket
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    PrivateAttr,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from controller.models.base import (
    HAPROXY_NAME_PATTERN,
    NAME_PATTERN,
    SLUG_PATTERN,
    Command,
    ExistingDir,
    ExistingFile,
    Flag,
    HostPattern,
    Int,
    ItemName,
    LocalPath,
    Moment,
    Number,
    RemotePath,
    Slug,
    Version,
    _Model,
)
from controller.models.durations import Duration
from controller.models.items import (
    ArtifactItem,
    ConfigItem,
    DataItem,
    DirectoryItem,
    FileItem,
    ItemT,
    PackageItem,
    ServiceItem,
)
from controller.models.notify import NotifyConfig

# The building blocks from controller.models.base are re-exported: other config models
# (continuity, notify) and the tests import them from here.
__all__ = [
    "BATCH_SCHEMA",
    "NAME_PATTERN",
    "PERCENT_PATTERN",
    "SLUG_PATTERN",
    "ArtifactItem",
    "BatchSize",
    "ChangeWindow",
    "Command",
    "ConfigItem",
    "DataItem",
    "DirectoryItem",
    "ExistingDir",
    "ExistingFile",
    "FileItem",
    "Gates",
    "ItemName",
    "ItemT",
    "Level",
    "LoadThresholds",
    "LocalPath",
    "LocustGate",
    "Manifest",
    "Owners",
    "PackageItem",
    "Playbooks",
    "RemotePath",
    "Risk",
    "ServiceItem",
    "SignoffPolicy",
    "Slug",
    "SnapshotPolicy",
    "Strategy",
    "TestinfraGate",
    "_Model",
]

PERCENT_PATTERN = r"^(100|[1-9][0-9]?)%$"
BATCH_SCHEMA = {"anyOf": [{"type": "integer", "minimum": 1},
                          {"type": "string", "pattern": PERCENT_PATTERN}]}

Level = Literal["low", "medium", "high"]
MAX_HOSTS = 100_000


def _as_list(value: Any) -> Any:
    """Accept one path or null where a list of paths is expected."""
    if value is None:
        return []
    return [value] if isinstance(value, str | Path) else value


class Playbooks(_Model):
    """The Ansible playbooks of the release."""

    apply: list[ExistingFile] = Field(min_length=1, description="Playbooks that apply it.")
    rollback: list[ExistingFile] = Field(
        default_factory=list, description="Playbooks run after the snapshot restore, if any."
    )
    check_mode_supported: Flag = Field(
        False, description="The apply playbooks can run with --check for a dry run."
    )
    strategy: Literal["linear", "mitogen"] = Field(
        "linear", description="How Ansible runs these playbooks: linear (Ansible's own) "
        "or mitogen (Mitogen for Ansible's mitogen_linear strategy, installed beside "
        "relctl: pipx inject relctl mitogen). An opt-in: ansible-core 2.19 deprecates "
        "strategy plugins other than its own.")

    _lists = field_validator("apply", "rollback", mode="before")(_as_list)


def _batch_size(value: Any) -> int | str:
    """A host count (>= 1) or a percentage string such as ``"50%"``."""
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_HOSTS:
        return value
    if isinstance(value, str) and re.fullmatch(PERCENT_PATTERN, value.strip()):
        return value.strip()
    raise PydanticCustomError(
        "batch_size", "expected a host count >= 1 or a percentage like '50%', got {value}",
        {"value": repr(value)},
    )


BatchSize = Annotated[int | str, PlainValidator(_batch_size), WithJsonSchema(BATCH_SCHEMA)]


class LoadBalancer(_Model):
    """The load balancer in front of both sites (HAProxy, driven by its runtime API)."""

    kind: Literal["haproxy"] = Field("haproxy", description="Load balancer type.")
    group: HostPattern = Field("lb", description="Inventory group of the LB host.")
    backend: str | None = Field(
        None, pattern=HAPROXY_NAME_PATTERN, max_length=100,
        description="HAProxy backend of the service; default: the service's name, as "
        "relctl lab up names it.")
    port: Int = Field(8000, ge=1, le=65535, description="Port of the LB's frontend.")
    runtime_api_port: Int = Field(9999, ge=1, le=65535,
                                  description="TCP port of HAProxy's runtime API.")
    state_file: RemotePath = Field("/var/lib/haproxy/server-state",
                                   description="HAProxy server-state-file on the LB host.")
    servers: dict[HostPattern, Annotated[str, Field(pattern=HAPROXY_NAME_PATTERN,
                                                    max_length=100)]] = Field(
        default_factory=dict,
        description="Inventory host -> its server name in the LB, where they differ.")


class AnalysisStep(_Model):
    """One step of a canary analysis: the canary batch's share of the traffic, how long."""

    weight: Int = Field(ge=1, le=100, description="Percent of the backend's traffic the "
                        "canary batch takes (HAProxy server weights), e.g. 10, then 50; "
                        "100 with compare: window-before (the canary takes it all).")
    duration_s: Number = Field(gt=0, le=3600, description="Seconds of load judged at this "
                               "weight (an inconclusive step runs once more as long).")


class CanarySignoff(_Model):
    """An inconclusive canary waits for a person: ``relctl signoff RELEASE --role ROLE``
    (or the sign-off form of ``relctl serve``) lets the release go on."""

    signoff: Slug = Field(description="The role whose sign-off lets an inconclusive canary "
                          "go on, e.g. canary-review.")
    wait: Duration = Field(gt=0, le=7 * 86400, description="How long the release waits for "
                           "it (30m); a wait that runs out fails the canary (rolled back).")


class CanaryAnalysis(_Model):
    """Judge the canary batch under load before the next batch gets the release: Locust
    through the load balancer, every request attributed to the server the LB names
    (``X-Served-By``), the canary's requests against those of the hosts still on the old
    release in the same seconds (``same-time``, active/active backends) or against a window
    of the old release taken just before the change (``window-before``, active/standby:
    the canary then takes all the traffic), by statistics (Mann-Whitney U, Fisher's exact
    test)."""

    compare: Literal["same-time", "window-before"] = Field(
        "same-time", description="same-time: the canary's share against the old servers' "
        "in the same seconds (round-robin backends); window-before: the canary takes the "
        "traffic and is compared with the old release's window just before its change "
        "(active/standby, one writer).")
    on_inconclusive: Literal["fail"] | CanarySignoff = Field(
        "fail", description="A step still inconclusive after its extension: fail (the "
        "canary is rolled back), or {signoff: ROLE, wait: 30m} to wait for a person.")

    steps: list[AnalysisStep] = Field(
        default_factory=lambda: [AnalysisStep(weight=50, duration_s=20)],
        min_length=1, max_length=20, description="Weights the canary takes in turn, each "
        "judged before the next; a failed step rolls back the canary alone.")
    locustfile: ExistingFile | None = Field(
        None, description="Locust file of the load; default: gates.locust's.")
    url: str | None = Field(None, pattern=r"^https?://", description="Where the load goes; "
                            "default: gates.locust's url, else the lab's load balancer.")
    users: Int = Field(10, ge=1, le=100_000, description="Simulated users.")
    spawn_rate: Number = Field(10, gt=0, le=100_000, description="Users started per second.")
    lb: LoadBalancer = Field(default_factory=LoadBalancer,
                             description="The HAProxy whose weights give the canary its "
                             "share (its runtime API), and its backend.")
    alpha: Number = Field(0.01, gt=0, le=0.5, description="Significance level of each test.")
    effect: Number = Field(0.6, ge=0.5, le=1, description="Effect-size tolerance: a slower "
                           "canary fails only when one of its requests is slower than an old "
                           "one with at least this probability.")
    slack_ms: Number = Field(5, ge=0, le=3_600_000, description="Median shifts up to this "
                             "many ms never fail (noise).")
    min_samples: Int = Field(50, ge=1, le=100_000_000, description="Fewer requests on "
                             "either side make a step inconclusive.")

    @model_validator(mode="before")
    @classmethod
    def _window_takes_it_all(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("compare") == "window-before" \
                and "steps" not in data:
            return {**data, "steps": [{"weight": 100, "duration_s": 20}]}
        return data

    @field_validator("steps")
    @classmethod
    def _weights_fit_the_comparison(cls, steps: list[AnalysisStep],
                                    info: ValidationInfo) -> list[AnalysisStep]:
        compare = info.data.get("compare")  # declared, so validated, before the steps
        for number, step in enumerate(steps):
            if compare == "window-before" and step.weight != 100:
                raise ValueError(f"steps[{number}].weight: with compare: window-before the "
                                 "canary takes all the traffic: 100 (or leave steps out)")
            if compare == "same-time" and step.weight == 100:
                raise ValueError(f"steps[{number}].weight: 100 leaves no old server to "
                                 "compare with in the same seconds; use compare: "
                                 "window-before for an active/standby backend")
        return steps


class Strategy(_Model):
    """How hosts are rolled: a canary batch first, then fixed-size batches."""

    canary: Int = Field(1, ge=1, le=MAX_HOSTS, description="Hosts in the first batch.")
    batch_size: BatchSize = Field(
        1, description="Hosts per later batch, or a percentage of all hosts ('50%')."
    )
    analysis: CanaryAnalysis | None = Field(
        None, description="Judge the canary under load against the old release before the "
        "next batch (active/active backends); none: only its testinfra gate.")
    max_fail_percentage: Int = Field(
        0, ge=0, le=0, description="Percentage of a batch allowed to fail before rollback. "
        "Only 0 for now: relctl rolls the release back on any host's failure, because "
        "tolerating some would leave a mixed fleet."
    )

    def batch_hosts(self, total: int) -> int:
        """Hosts per batch after the canary, for ``total`` hosts."""
        if isinstance(self.batch_size, int):
            return self.batch_size
        return max(1, math.ceil(total * int(self.batch_size[:-1]) / 100))

    def batches(self, hosts: list[str]) -> list[list[str]]:
        """The canary batch, then ``batch_size`` chunks; duplicates dropped, order kept."""
        unique = list(dict.fromkeys(hosts))
        first, rest = unique[: self.canary], unique[self.canary :]
        size = self.batch_hosts(len(unique))
        chunks = [rest[i : i + size] for i in range(0, len(rest), size)]
        return [first, *chunks] if first else []


PythonModule = Annotated[str, Field(pattern=r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$", max_length=200)]


class TestinfraGate(_Model):
    """A testinfra test file run against every host of a batch."""

    __test__ = False  # not a pytest test class, despite the name

    tests: ExistingFile = Field(description="testinfra test file (must exist).")
    env: dict[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")],
              Annotated[str, Field(pattern=r"^[^\x00]*$")]] = Field(
        default_factory=dict, description="Environment variables for the test run."
    )
    plugins: list[PythonModule] = Field(
        default_factory=list, max_length=20,
        description="pytest plugins (module names) the tests need besides testinfra: the "
        "gate's pytest loads only those it is given (-p MODULE), not every plugin "
        "installed beside relctl (Locust's would patch it with gevent).")


class LoadThresholds(BaseModel):
    """What a load test must show for the release to pass.

    Not frozen: ``controller.planning.gates.LoadCriteria`` declares settable attributes.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    p95_ms: Number | None = Field(None, gt=0, le=3_600_000,
                                  description="Highest allowed p95 latency (ms).")
    max_failure_ratio: Number | None = Field(
        0.01, ge=0, le=1, description="Highest allowed share of failed requests (null: any)."
    )
    min_rps: Number | None = Field(None, ge=0, le=1e9,
                                   description="Lowest allowed requests per second.")
    p95_vs_baseline: Number | None = Field(
        None, gt=0, le=1e6,
        description="Highest allowed ratio of candidate p95 to baseline p95."
    )
    p95_slack_ms: Number = Field(
        25, ge=0, le=3_600_000,
        description="Noise allowance of p95_vs_baseline: the candidate fails it only "
        "when its p95 is also this many ms above the baseline's.")
    min_requests: Int = Field(
        20, ge=1, le=1_000_000_000,
        description="Fewer measured requests make the verdict inconclusive."
    )


ArgvWord = Annotated[str, Field(min_length=1, max_length=1000, pattern=r"^[^\x00\n]*$")]


class LocustWorkerHosts(_Model):
    """Locust workers on inventory hosts (Locust's distributed mode across machines): the
    master runs on the controller and aggregates their statistics; the workers are
    started over Ansible for the run and end with it."""

    hosts: HostPattern = Field(description="Inventory group or pattern of the hosts that "
                               "run workers (load generators, not the targets).")
    per_host: Int = Field(1, ge=1, le=64, description="Worker processes on each host.")
    command: list[ArgvWord] = Field(
        default_factory=lambda: ["locust"], min_length=1, max_length=20,
        description="The command that runs Locust on those hosts, as argv (no shell), "
        "e.g. [/opt/locust/bin/python, -m, locust]; relctl adds the worker options.")
    master_host: str | None = Field(
        None, pattern=r"^[A-Za-z0-9][A-Za-z0-9.:-]*$", max_length=253,
        description="The controller's address the workers connect to (the master listens "
        "on it, nowhere else); default: the address the controller reaches the first "
        "worker host from.")
    connect_s: Number = Field(
        60, gt=0, le=3600,
        description="How long the master waits for every worker to connect.")

    @field_validator("master_host")
    @classmethod
    def _one_address(cls, value: str | None) -> str | None:
        """The master listens on this address alone: "any address" (0.0.0.0, ::) would
        open the unauthenticated master to every network the controller is on."""
        if value is None:
            return value
        try:
            unspecified = ipaddress.ip_address(value).is_unspecified
        except ValueError:  # a name, or a short form such as 0 (inet_aton's 0.0.0.0)
            try:
                unspecified = socket.inet_aton(value) == bytes(4)
            except OSError:
                unspecified = False
        if unspecified:
            raise ValueError(f"{value} means every address; name the one address the "
                             "worker hosts reach the controller on")
        return value


class LocustGate(_Model):
    """A headless Locust run through the load balancer."""

    locustfile: ExistingFile = Field(description="Locust file (must exist).")
    url: str | None = Field(
        None, pattern=r"^https?://", description="Target URL; default: the environment's LB."
    )
    users: Int = Field(10, ge=1, le=100_000, description="Simulated users.")
    spawn_rate: Number = Field(10, gt=0, le=100_000, description="Users started per second.")
    duration_s: Number = Field(10, gt=0, le=86400,
                               description="Length of the measured run in seconds.")
    workers: Int = Field(
        0, ge=0, le=64,
        description="0: Locust runs as one process. N: Locust's distributed mode, a master "
        "and N worker processes on the controller, for more load than one core gives; "
        "same figures and verdicts.")
    worker_hosts: LocustWorkerHosts | None = Field(
        None, description="Run the load from workers on these inventory hosts (the "
        "master on the controller); instead of workers.")
    thresholds: LoadThresholds = Field(
        default_factory=LoadThresholds, description="Pass/fail thresholds."
    )

    @model_validator(mode="after")
    def _one_kind_of_workers(self) -> LocustGate:
        if self.workers and self.worker_hosts is not None:
            raise ValueError("workers (on the controller) and worker_hosts (on inventory "
                             "hosts) exclude each other: give one")
        return self


class Gates(_Model):
    """Checks run after each batch; any failure rolls the release back."""

    testinfra: list[TestinfraGate] = Field(
        default_factory=list, description="testinfra gates, run in order."
    )
    locust: LocustGate | None = Field(None, description="Load gate, if any.")


class SnapshotPolicy(_Model):
    """Where hosts keep their copy of the snapshots, and how many releases are kept."""

    keep: Int = Field(5, ge=1, le=1000, description="Releases whose snapshots are kept "
                      "(controller store and hosts); a snapshot a release can still be "
                      "rolled back to is kept whatever its age.")
    host_dir: RemotePath = Field("/var/lib/relctl", validate_default=True,
                                 description="relctl's folder on each host (made 0700); "
                                 "snapshots go under its snapshots/ folder.")


class Owners(_Model):
    """Who answers for the release."""

    release_manager: str = Field(min_length=1, description="Person running the release.")
    approvers: list[str] = Field(
        default_factory=list, description="People or boards who must sign off."
    )


class ChangeWindow(_Model):
    """When the change may be made (timezone-aware)."""

    start: Moment = Field(description="Start of the window, with a UTC offset.")
    end: Moment = Field(description="End of the window, with a UTC offset.")

    @model_validator(mode="after")
    def _ordered(self) -> ChangeWindow:
        if self.end <= self.start:
            raise ValueError("the window must end after it starts")
        return self

    def contains(self, moment: datetime) -> bool:
        """True when the timezone-aware ``moment`` lies inside the window."""
        return self.start <= moment < self.end


class Risk(_Model):
    """A known risk of the release and how it is handled."""

    title: str = Field(min_length=1, description="What could go wrong.")
    likelihood: Level = Field(description="low, medium or high.")
    impact: Level = Field(description="low, medium or high.")
    mitigation: str = Field(min_length=1, description="What reduces or handles it.")


class SignoffPolicy(_Model):
    """Who must approve the release before ``apply`` may touch this environment."""

    required: list[Slug] = Field(
        min_length=1, description="Roles that must sign off (relctl signoff RELEASE --role "
        "ROLE --by NAME) before apply, e.g. [uat, change-board].")
    wait: Duration | None = Field(
        None, ge=0, le=7 * 86400,
        description="How long apply waits for missing sign-offs (30m, 4h) before it refuses; "
        "none: refuse at once. A wait that runs out counts as denied.")

    @field_validator("required")
    @classmethod
    def _unique_roles(cls, roles: list[str]) -> list[str]:
        return list(dict.fromkeys(roles))


class Manifest(_Model):
    """One release of one service to one environment."""

    release: Slug = Field(description="Release id, e.g. billing-2.4.0.")
    version: Version = Field(description="Version being released: letters, digits, . _ + ~ -.")
    service: Slug = Field(description="Service the release belongs to.")
    environment: Slug = Field(description="Environment: the lock and sign-off scope.")
    inventory: LocalPath | None = Field(
        None, description="Ansible inventory; relative to the manifest; the CLI may override."
    )
    targets: HostPattern = Field(description="Inventory group or host pattern (never an "
                                 "option: it cannot start with '-').")
    items: list[ConfigItem] = Field(
        min_length=1, description="Configuration items, snapshotted before the apply."
    )
    playbooks: Playbooks = Field(description="Playbooks that apply (and roll back) it.")
    extravars: dict[str, Any] = Field(
        default_factory=dict, description="Extra variables passed to the playbooks."
    )
    strategy: Strategy = Field(default_factory=Strategy, description="Batching of the hosts.")
    gates: Gates = Field(default_factory=Gates, description="Verification after each batch.")
    snapshots: SnapshotPolicy = Field(default_factory=SnapshotPolicy,
                                      description="Snapshot retention and host copies.")
    owners: Owners = Field(description="Who answers for the release.")
    window: ChangeWindow | None = Field(None, description="Change window, if any.")
    risks: list[Risk] = Field(default_factory=list, description="Known risks.")
    signoff: SignoffPolicy | None = Field(
        None, description="Sign-offs this environment requires before apply, if any.")
    notify: NotifyConfig | None = Field(
        None, description="Maintenance notices to users: channels and templates, if any.")

    _source: tuple[Path, str] | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _analysis_has_load(self) -> Manifest:
        analysis = self.strategy.analysis
        if analysis is not None and analysis.locustfile is None and self.gates.locust is None:
            raise ValueError("strategy.analysis needs a locustfile: its own, or gates.locust's")
        return self

    @field_validator("items")
    @classmethod
    def _unique_names(cls, items: list[Any]) -> list[Any]:
        seen: dict[str, int] = {}
        for index, item in enumerate(items):
            if item.name in seen:
                raise ValueError(
                    f"duplicate item name {item.name!r} (items[{seen[item.name]}] and "
                    f"items[{index}])"
                )
            seen[item.name] = index
        return items

    def item(self, name: str) -> ConfigItem:
        """The item called ``name``."""
        for item in self.items:
            if item.name == name:
                return item
        raise KeyError(name)

    def items_of(self, kind: type[ItemT]) -> list[ItemT]:
        """The items of one class, in manifest order."""
        return [item for item in self.items if isinstance(item, kind)]

    def irreversible_items(self) -> list[DataItem]:
        """Data items that cannot be rolled back once converted (points of no return)."""
        return [item for item in self.items_of(DataItem) if not item.reversible]

    @property
    def source_path(self) -> Path | None:
        """The file the manifest was loaded from, if any."""
        return self._source[0] if self._source else None

    @property
    def source_sha256(self) -> str | None:
        """sha256 of the text the manifest was loaded from, if any."""
        return self._source[1] if self._source else None

    def with_source(self, path: Path, sha256: str) -> Manifest:
        """A copy that remembers the file (and its digest) it was loaded from."""
        copy = self.model_copy()
        copy._source = (path, sha256)
        return copy
