"""Checks before a drill or a failover touches anything: what is knowable beforehand is
known beforehand. A failed check is exit 2 (``PreflightError``) naming it, with nothing
injected and nothing switched; ``drill --dry-run`` runs the same checks.

    serving       a drill's primaries answer their health check
    lb            the LB answers and has the plan's backend and a server for every host
    reachable     every host answers relctl's agent over Ansible's connection (a drill:
                  both sites; a failover: the backup site, the primaries may be lost)
    versions      every host that answers reports a version the plan can read
    skew          (a risk, not a refusal) backups on another release than the last good
                  one: the failover would deploy first, and what that adds to the RTO
    deploy        the last good release's apply playbooks match every backup host (a
                  failover may have to deploy it there)
    way back      every fault can be undone: the plan's ``restart``, else the last good
                  release's service items (a lost host's service must start again)
    replication   a drill replicates now, before any fault (a dry run names the last
                  replica); only when every other check passed
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from controller.adapters.ansible import playbook_hosts, strategy_environment
from controller.engine.continuity.context import Continuity
from controller.engine.continuity.methods import replicate
from controller.engine.continuity.records import ReplicaRecord
from controller.errors import InputError, PrerequisiteError, RelctlError
from controller.journal import ContinuityRecord, ReleaseRecord
from controller.models.manifest import Manifest


@dataclass(frozen=True)
class Check:
    """One preflight check: its name, whether it passed, and what it found."""

    name: str
    ok: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


class PreflightError(InputError):
    """A preflight check failed: nothing was injected or switched (exit 2)."""

    def __init__(self, what: str, checks: list[Check]) -> None:
        failed = [c for c in checks if not c.ok]
        super().__init__(f"{what} refused by its preflight, nothing touched: "
                         + "; ".join(f"{c.name}: {c.detail}" for c in failed),
                         hint="fix what the failed checks name, then run it again "
                         "(--dry-run runs the same checks)")
        self.checks = checks


@dataclass
class Preflight:
    """The checks of one drill or failover, in order; each runs even when an earlier one
    failed (the report names everything to fix at once), but replication only when all
    the others passed (it writes to the backup site)."""

    ctx: Continuity
    hosts: list[str]  # the hosts that must answer
    restart_hosts: list[str]  # hosts whose service a fault stops (a way back is needed)
    serving: list[str] = field(default_factory=list)  # hosts that must serve (a drill's primaries)
    checks: list[Check] = field(default_factory=list)
    replica: ContinuityRecord | None = None  # the drill's replication, made by ``check``
    found: dict[str, str] = field(default_factory=dict)  # host -> the version it reports

    def check(self, what: str, *, replicate: bool) -> list[Check]:
        """Every check (``replicate``: replicate now, as a drill does before its fault;
        else only say that it will); ``PreflightError`` when one fails."""
        for name, check in (("serving", self.serve), ("lb", self.lb),
                            ("reachable", self.reachable),
                            ("versions", self.versions), ("skew", self.skew),
                            ("deploy", self.deploy), ("way back", self.way_back)):
            self.attempt(name, check)
        if self.ctx.plan.data and all(c.ok for c in self.checks):
            self.attempt("replication", self.replicate if replicate else self.last_replica)
        if not all(c.ok for c in self.checks):
            raise PreflightError(what, self.checks)
        return self.checks

    def attempt(self, name: str, check: Callable[[], str | None]) -> None:
        try:
            found = check()
        except RelctlError as error:
            self.checks.append(Check(name, False, error.message))
            return
        if found is not None:
            self.checks.append(Check(name, True, found))

    @cached_property
    def answering(self) -> set[str]:
        """The hosts whose service answers its health check (each asked once)."""
        return {h for h in dict.fromkeys([*self.serving, *self.hosts])
                if self.ctx.site.healthy(h, timeout=2)}

    def serve(self) -> str | None:
        if not self.serving:
            return None
        down = [h for h in self.serving if h not in self.answering]
        if down:
            raise InputError(f"{', '.join(down)} do not answer {self.ctx.plan.health_path}: "
                             "the primary site is not healthy (relctl failback, or start it)")
        return f"{', '.join(self.serving)} answer {self.ctx.plan.health_path}"

    def lb(self) -> str:
        lacks = self.ctx.site.lb.lacks([*self.ctx.site.primaries, *self.ctx.site.backups])
        if lacks:
            raise InputError(lacks)
        return f"backend {self.ctx.plan.backend!r} serves every host of both sites"

    def reachable(self) -> str:
        replies = self.ctx.site.agent.hello("preflight", self.hosts)
        down = {h: r.error for h, r in replies.items() if not r.ok}
        if down:
            raise InputError("not reachable: " + "; ".join(
                f"{h}: {' '.join(e.split())[:200]}" for h, e in sorted(down.items())))
        return f"{', '.join(self.hosts)} answer"

    def versions(self) -> str | None:
        if self.ctx.plan.version_path is None:
            return None
        found, problems = {}, []
        for host in self.hosts:
            if host not in self.answering:
                continue  # a cold backup host: a failover deploys it (the deploy check)
            read = self.ctx.site.version(host)
            if read.version is None:
                problems.append(f"{host}: {read.problem}")
            else:
                found[host] = read.version
        if problems:
            raise InputError("cannot read the version: " + "; ".join(problems)
                             + " (set version_pointer or version_pattern in the plan)")
        self.found = found
        return ", ".join(f"{h} {v}" for h, v in found.items()) or "no host answers yet"

    def skew(self) -> str | None:
        """A backup site on another release than the last good one: not an error, a risk
        named with what it costs (the failover deploys first)."""
        return skew_risk(self.ctx, self.good(), self.found)

    def good(self) -> ReleaseRecord | None:
        return self.ctx.services.last_good()

    def deploy(self) -> str:
        good = self.good()
        if good is None:
            return "no release is marked good: the backups keep what they run"
        manifest = self.ctx.services.release_manifest(good)
        missing = self.unmatched(manifest, self.ctx.site.backups)
        if missing:
            raise InputError(f"no play of {good.name}'s apply playbooks targets "
                             f"{', '.join(missing)}: a failover would deploy nothing there")
        try:
            strategy_environment(manifest.playbooks.strategy)
        except PrerequisiteError as error:  # the deploy would fail mid-failover
            raise PrerequisiteError(f"{good.name}: {error.message} ({error.hint})") from error
        return f"{good.name}'s apply playbooks target every backup host"

    def way_back(self) -> str | None:
        if not self.restart_hosts:
            return None
        hosts = ", ".join(self.restart_hosts)
        if self.ctx.plan.restart:
            return f"the plan's restart command starts the service on {hosts}"
        good = self.good()
        if good is None:
            raise InputError(f"no way to start the service again on {hosts}: the plan has "
                             "no restart command and no release is marked good")
        if not self.ctx.service_items(good):
            raise InputError(f"no way to start the service again on {hosts}: the plan has "
                             f"no restart command and {good.name} has no service item")
        return f"{good.name}'s service items start the service on {hosts}"

    def replicate(self) -> str:
        self.replica = replicate(self.ctx)
        replica = ReplicaRecord.of(self.replica)
        return (f"replicated now ({replica.bytes} bytes)" if replica.method == "copy" else
                f"{replica.method} replicates to the backup site")

    def last_replica(self) -> str:
        last = self.ctx.services.last_replica()
        when = (f"; the last: {last.method} record {last.id} of {last.captured_iso}"
                if last else "; none yet")
        return f"a drill replicates before its fault (not in a dry run){when}"

    def unmatched(self, manifest: Manifest, hosts: list[str]) -> list[str]:
        """Those of ``hosts`` that no play of ``manifest``'s apply playbooks targets."""
        env = self.ctx.services.env
        matched: set[str] = set()
        for playbook in manifest.playbooks.apply:
            matched.update(playbook_hosts(playbook, env.inventory, env.ansible_cfg, hosts,
                                          manifest.extravars, env.runs_dir))
        return [h for h in hosts if h not in matched]


def skew_risk(ctx: Continuity, good: ReleaseRecord | None, found: dict[str, str]
              ) -> str | None:
    """The risk of a backup site on another release than ``good`` (``found``: the version
    each answering host reports), with what it would add to a failover's RTO (the
    release's apply phase, from the journal); None when there is none to name."""
    if good is None or ctx.plan.version_path is None:
        return None  # nothing to compare with, or no version to read
    behind = {h: found.get(h, "nothing (cold)") for h in ctx.site.backups
              if found.get(h) != good.version}
    if not behind:
        return None
    deploy_s = max((p.seconds or 0.0 for p in ctx.services.journal.phases(good.id)
                    if p.name.startswith("apply:")), default=None)
    cost = f"about {deploy_s:.0f} s, its apply phase" if deploy_s else "a deploy"
    return ("RISK: " + ", ".join(f"{h} runs {v}" for h, v in behind.items())
            + f", not {good.version}: a failover deploys {good.name} there first, "
            f"adding {cost} to the RTO; list the release manifests under the plan's "
            "releases: and the backup site follows every release")


def site_versions(ctx: Continuity) -> dict[str, Any]:
    """What each site runs now, as its hosts report it (``relctl status --plan``): per
    site, each host's version (or why there is none), the last good release, the risk of
    a backup site on another release. Reads only; touches nothing."""
    sites: dict[str, dict[str, Any]] = {}
    found: dict[str, str] = {}
    for site, hosts in (("primary", ctx.site.primaries), ("backup", ctx.site.backups)):
        sites[site] = {}
        for host in hosts:
            if not ctx.site.healthy(host, timeout=1):
                sites[site][host] = {"version": None, "problem": "does not answer"}
                continue
            read = ctx.site.version(host)
            sites[site][host] = {"version": read.version, "problem": read.problem}
            if read.version is not None:
                found[host] = read.version
    good = ctx.services.last_good()
    return {"plan": str(ctx.services.plan_path), "service": ctx.plan.service,
            "environment": ctx.plan.environment, "sites": sites,
            "last_good": good.version if good else None,
            "skew": skew_risk(ctx, good, found)}
