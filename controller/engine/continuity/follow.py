"""The backup site follows releases: once ``apply`` has released a manifest to the
primaries, the backup hosts get the same release, so a site loss finds them ready.

    find        the continuity plan that covers the manifest (``releases:``), found
                through the journal: the newest continuity record of the service and
                environment names its plan
    preflight   the site is not failed over (the backups do not serve), the backups
                answer
    out         the backups out of the LB's rotation (maintenance), each remembered
    deploy      the release's own apply playbooks, limited to the backup hosts
    verify      the version each backup reports, and the release's testinfra gates there
    back        the backups back in the LB as they were

The whole is journaled as the release's ``follow`` phase (``FOLLOW_PHASE``), its detail
the plan, the backup hosts, the version they were brought to and whether they were: what
``relctl plan`` and ``show`` read back. A failure here never rolls back the primaries: it
is reported (``apply`` exits 13) and journaled on the release, and the next failover
deploys the backups as before.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.engine.continuity.context import Continuity, load_plan
from controller.engine.outcome import ReleaseOutcome
from controller.errors import ContinuityError, ExitCode, RelctlError
from controller.journal import Journal, ReleaseRecord
from controller.models.manifest import Manifest
from controller.planning.continuity import covers

FOLLOW_PHASE = "follow"  # the release's phase that records the backup site following it


@dataclass
class Followed:
    """What the backup site did after a release: for ``apply --json`` and the journal."""

    plan: str
    hosts: list[str]
    ok: bool
    steps: list[str] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"plan": self.plan, "hosts": self.hosts, "ok": self.ok, "steps": self.steps,
                "error": self.error}


def followed_versions(journal: Journal, records: list[ReleaseRecord]) -> dict[str, str]:
    """backup host -> the version the newest ``follow`` among ``records`` (newest first)
    brought it to; a host whose newest follow failed or never ended (a controller killed
    mid-follow) is left out, unknown, as is one no release followed to."""
    found: dict[str, str | None] = {}
    for record in records:
        for phase in reversed(journal.phases(record.id)):
            if phase.name != FOLLOW_PHASE:
                continue
            hosts = phase.detail.get("hosts")
            for host in hosts if isinstance(hosts, list) else []:
                if isinstance(host, str) and host not in found:
                    found[host] = record.version if phase.state == "ok" else None
    return {host: version for host, version in found.items() if version is not None}


def covering_plan(journal: Journal, manifest: Manifest) -> tuple[Path | None, str | None]:
    """The continuity plan whose ``releases`` name ``manifest``, and why none when none
    is (None: no plan of this service and environment has been used yet; a plan that
    does not list its releases opts out)."""
    if manifest.source_path is None:
        return None, None
    seen: set[str] = set()
    problems: list[str] = []
    for record in journal.continuity_records(service=manifest.service,
                                             environment=manifest.environment, limit=50):
        named = record.detail.get("plan")
        if not isinstance(named, str) or named in seen:
            continue
        seen.add(named)
        path = Path(named)
        if not path.is_file():
            problems.append(f"the continuity plan {named} (continuity record {record.id}) is "
                            "not on this machine")
            continue
        try:
            plan, _ = load_plan(path)
        except RelctlError as error:
            problems.append(f"the continuity plan {named} does not load: {error.message}")
            continue
        if covers(path, plan.releases, manifest.source_path):
            return path, None
    if problems:
        return None, "; ".join(problems) + ": the backup site may not follow this release"
    return None, None


def follow_release(ctx: Continuity, record: ReleaseRecord,
                   progress: Callable[[str], None]) -> Followed:
    """Bring the backup hosts of ``ctx``'s plan to release ``record`` (released on the
    primaries); journals each step on the release. Never raises a ``RelctlError``."""
    followed = Followed(str(ctx.services.plan_path), ctx.site.backups, False)
    journal, began = ctx.services.journal, time.monotonic()
    phase = journal.begin_phase(record.id, FOLLOW_PHASE, {"plan": followed.plan,
                                                          "hosts": followed.hosts})

    def step(what: str) -> None:
        followed.steps.append(what)
        ctx.services.journal.log(record.id, f"backup site: {what}")
        progress(f"backup site: {what}")

    lb, standby = ctx.site.lb, ctx.site.backups
    was_out: list[str] = []
    taken_out = False
    try:
        if ctx.site.lb.in_maintenance(ctx.site.primaries):
            raise ContinuityError("the primaries are in maintenance on the LB: the site is "
                                  "failed over and the backups serve; run relctl failback, "
                                  "then release again")
        was_out = lb.in_maintenance(standby)
        taken_out = True
        lb.activate(active=[], standby=standby)
        step(f"{', '.join(standby)} out of the LB's rotation")
        ctx.deploy(record, standby, f"follow-{record.id}")
        step(f"{record.name} deployed on {', '.join(standby)}")
        reads = {h: ctx.site.version(h) for h in standby} if ctx.plan.version_path else {}
        unread = {h: r for h, r in reads.items() if r.version != record.version}
        if unread:
            raise ContinuityError("after the deploy, " + "; ".join(
                f"{h} reports {r.version or r.problem!r}" for h, r in unread.items())
                + f", not {record.version}")
        failed = ctx.testinfra(record, standby, f"follow-{record.id}")
        if failed:
            raise ContinuityError("testinfra fails on the backup site: " + "; ".join(failed[:5]))
        step(f"{', '.join(standby)} run {record.version}, testinfra green")
        followed.ok = True
    except RelctlError as error:
        followed.error = error.message
        step(f"NOT followed: {error.message}")
    finally:
        back = [h for h in standby if h not in was_out]
        try:
            if back and taken_out:
                lb.activate(active=back, standby=[])
                step(f"{', '.join(back)} back in the LB's rotation")
        except RelctlError as error:
            followed.ok, followed.error = False, error.message
            step(f"the LB did not take {', '.join(back)} back: {error.message}")
        journal.end_phase(phase, "ok" if followed.ok else "failed",
                          {**followed.as_dict(), "version": record.version},
                          seconds=time.monotonic() - began)
        ctx.close()
    return followed


def follow_backups(state_dir: Path, manifest: Manifest, journal: Journal,
                   inventory: Path | None, outcome: ReleaseOutcome,
                   progress: Callable[[str], None]) -> None:
    """After ``apply`` released ``manifest``: the backup site brought to it when a
    continuity plan lists the manifest under ``releases``; ``outcome`` says how (exit 13
    when the backups did not follow; the primaries stay released)."""
    plan, why_not = covering_plan(journal, manifest)
    if why_not is not None:
        outcome.backup_site = {"ok": None, "warning": why_not}  # not asked for: exit 0
        progress(f"warning: {why_not}")
        return
    if plan is None or outcome.release_id is None:
        return
    record = journal.release(outcome.release_id)
    try:
        ctx = Continuity.open(state_dir, plan, journal, inventory, progress)
    except RelctlError as error:
        followed = Followed(str(plan), [], False, error=error.message)
    else:
        followed = follow_release(ctx, record, progress)
    outcome.backup_site = followed.as_dict()
    if followed.ok:
        outcome.message += f"; the backup site ({', '.join(followed.hosts)}) follows it"
    else:
        outcome.exit_code = int(ExitCode.BACKUP_BEHIND)
        outcome.message += f"; the backup site did NOT follow: {followed.error}"
