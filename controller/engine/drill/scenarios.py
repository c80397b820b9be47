"""Drill scenarios: each knows its hosts, how to inject its fault, detect it, recover
from it and undo it. ``SCENARIOS`` maps the names the CLI lists to their classes.

A fault comes from the plan's declared commands for the scenario first (any inventory),
else from relctl's own channels where they apply; a scenario with no usable inject on
the plan's inventory is refused before anything starts.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import ClassVar, Protocol

from controller.engine.continuity import FailoverFigures, Outcome, failback, failover
from controller.engine.drill.faults import DrillSite, Fault, declared
from controller.errors import InputError
from controller.models.continuity import DrillSettings


@dataclass
class Recovery:
    """How the service came back: when (monotonic) each critical function was verified
    again, when the LB switched, and the failover that did it, if any."""

    verified_at: dict[str, float | None]
    switched: float | None = None
    failover: Outcome | None = None


class Scenario(Protocol):
    """One kind of fault a drill rehearses."""

    name: ClassVar[str]
    summary: ClassVar[str]
    data_at_risk: ClassVar[bool]  # its RPO is judged

    def faults(self, site: DrillSite, settings: DrillSettings) -> list[Fault]:
        """The faults to inject and how each is undone; ``InputError`` when the plan's
        inventory offers no way to inject it (checked before anything starts)."""

    def inject(self, site: DrillSite, faults: list[Fault], label: str) -> str:
        """Inject the faults; returns what was done, for the timeline."""

    def detect(self, site: DrillSite, settings: DrillSettings) -> float | None:
        """When (monotonic) relctl's polls saw the fault; None: not seen."""

    def recover(self, site: DrillSite, settings: DrillSettings, fault_at: float,
                detected_at: float | None) -> Recovery:
        """Bring the service back (or watch the LB do it)."""

    def after_undo(self, site: DrillSite) -> list[str]:
        """What restoring needs once the faults are undone (e.g. a failback)."""


class _ActiveHost:
    """Shared behaviour: the fault hits the active primary; the LB moves the traffic."""

    name: ClassVar[str]
    summary: ClassVar[str]
    data_at_risk: ClassVar[bool] = True

    def hosts(self, site: DrillSite) -> list[str]:
        return site.ctx.site.primaries[:1]

    def faults(self, site: DrillSite, settings: DrillSettings) -> list[Fault]:
        """The plan's declared commands for the scenario win; else relctl's own way."""
        commands = settings.faults.get(self.name)  # type: ignore[call-overload]
        if commands:
            return [declared(h, commands) for h in self.hosts(site)]
        return self.own_faults(site, settings)

    def own_faults(self, site: DrillSite, settings: DrillSettings) -> list[Fault]:
        raise NotImplementedError

    def refuse(self, site: DrillSite, how: str) -> InputError:
        return InputError(
            f"{site.ctx.services.plan_path}: drill.faults.{self.name} is needed to run "
            f"{self.name} on {site.ctx.services.env.inventory} ({how})",
            hint=f"declare how to inject and undo it: drill: {{faults: {{{self.name}: "
            "{inject: COMMAND, restore: COMMAND}}}")

    def inject(self, site: DrillSite, faults: list[Fault], label: str) -> str:
        return site.inject(faults, label)

    def detect(self, site: DrillSite, settings: DrillSettings) -> float | None:
        """Poll the hosts' health until ``detect_failures`` polls in a row fail."""
        watched, failures = self.hosts(site), 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if not any(site.ctx.site.healthy(h, timeout=settings.detect_interval * 2)
                       for h in watched):
                failures += 1
                if failures >= settings.detect_failures:
                    return time.monotonic()
            else:
                failures = 0
            time.sleep(settings.detect_interval)
        return None

    def recover(self, site: DrillSite, settings: DrillSettings, fault_at: float,
                detected_at: float | None) -> Recovery:
        verified = site.ctx.site.wait_functions(fault_at, site.ctx.plan.failover.verify_timeout)
        return Recovery({n: None if at is None else fault_at + at
                         for n, at in verified.passed_at.items()})

    def after_undo(self, site: DrillSite) -> list[str]:
        return []


class HostLoss(_ActiveHost):
    name = "host-loss"
    summary = ("the active primary host lost; the LB moves the traffic to the next primary "
               "(lab: its PID 1 killed; elsewhere: the plan's declared commands)")

    def own_faults(self, site: DrillSite, settings: DrillSettings) -> list[Fault]:
        if site.mode != "lab":
            raise self.refuse(site, "only relctl's own lab hosts can be killed by pid")
        return [Fault(h, "lab-host", "kill PID 1 (sshd) of the host", ("lab-up", "restart"))
                for h in self.hosts(site)]


class SiteLoss(HostLoss):
    name = "site-loss"
    summary = ("every primary host lost (lab: PID 1 killed; elsewhere: the plan's declared "
               "commands); relctl fails over to the backup site")

    def hosts(self, site: DrillSite) -> list[str]:
        return site.ctx.site.primaries

    def own_faults(self, site: DrillSite, settings: DrillSettings) -> list[Fault]:
        return [Fault(f.host, f.channel, f.inject, ("lab-up",))  # failback restarts it
                for f in super().own_faults(site, settings)]

    def recover(self, site: DrillSite, settings: DrillSettings, fault_at: float,
                detected_at: float | None) -> Recovery:
        begun = time.monotonic()
        outcome = failover(site.ctx, fault_at=fault_at, detected_at=detected_at,
                           checked=True)
        figures = outcome.figures
        assert isinstance(figures, FailoverFigures)
        return Recovery({n: None if at is None else begun + at
                         for n, at in figures.functions_at_s.items()},
                        begun + figures.preflight_s, outcome)

    def after_undo(self, site: DrillSite) -> list[str]:
        """Fail back when the LB keeps the primaries in maintenance (the failover ran);
        else the lost hosts' service is started again if the hosts were restarted."""
        if site.ctx.site.lb.in_maintenance(site.ctx.site.primaries):
            outcome = failback(site.ctx)
            return [f"failback {outcome.record_id}: {outcome.message}"]
        down = [h for h in site.ctx.site.primaries if not site.ctx.site.healthy(h, timeout=2)]
        return [site.restart(down, "site-loss-undo")] if down else []


class ServiceCrash(_ActiveHost):
    name = "service-crash"
    summary = ("the service process on the active primary killed (pid file, systemd unit, "
               "or the lab's process match); the LB moves the traffic, relctl restarts it")

    def own_faults(self, site: DrillSite, settings: DrillSettings) -> list[Fault]:
        hosts = self.hosts(site)
        if settings.pid_file:
            return [Fault(h, "pid-file", f"SIGKILL the pid in {settings.pid_file}",
                          ("restart",), argument=settings.pid_file) for h in hosts]
        if settings.systemd_unit:
            return [Fault(h, "systemd", f"systemctl kill --signal=KILL {settings.systemd_unit}",
                          ("restart",), argument=settings.systemd_unit) for h in hosts]
        if site.mode == "lab" and settings.process_match:
            return [Fault(h, "lab-process", f"SIGKILL processes matching "
                          f"{settings.process_match!r} in the host", ("restart",),
                          argument=settings.process_match) for h in hosts]
        raise self.refuse(site, "or set drill.pid_file or drill.systemd_unit")


class LbBackendFlap(_ActiveHost):
    name = "lb-backend-flap"
    summary = ("the active primary's LB health forced down and up again several times; "
               "the LB keeps the traffic on healthy servers")
    data_at_risk = False

    def own_faults(self, site: DrillSite, settings: DrillSettings) -> list[Fault]:
        return [Fault(h, "lb-health", f"LB health flapped {settings.flaps} times",
                      ("lb-health-up",)) for h in self.hosts(site)]

    def inject(self, site: DrillSite, faults: list[Fault], label: str) -> str:
        settings = site.ctx.plan.drill
        flaps = settings.flaps if settings else 3

        def flap() -> None:
            for _ in range(flaps):
                for fault in faults:
                    site.ctx.site.lb.force_health(fault.host, up=False)
                time.sleep(1.0)
                for fault in faults:
                    site.ctx.site.lb.force_health(fault.host, up=True)
                time.sleep(1.0)

        threading.Thread(target=flap, name="relctl-flap", daemon=True).start()
        return f"{', '.join(f.host for f in faults)} flapping {flaps} times"

    def detect(self, site: DrillSite, settings: DrillSettings) -> float | None:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if not site.ctx.site.lb.is_up(self.hosts(site)[0]):
                return time.monotonic()
            time.sleep(settings.detect_interval)
        return None

    def recover(self, site: DrillSite, settings: DrillSettings, fault_at: float,
                detected_at: float | None) -> Recovery:
        super().recover(site, settings, fault_at, detected_at)
        time.sleep(2.0 * settings.flaps)  # let the flapping finish before judging
        return super().recover(site, settings, fault_at, detected_at)


class Latency(_ActiveHost):
    name = "latency"
    summary = ("a delay added on the active primary's service port (the plan's declared "
               "commands, e.g. tc netem); every critical function must still answer within "
               "its check's timeout")
    data_at_risk = False

    def own_faults(self, site: DrillSite, settings: DrillSettings) -> list[Fault]:
        raise self.refuse(site, f"e.g. tc qdisc add dev IFACE root netem delay "
                          f"{settings.latency_ms}ms / tc qdisc del dev IFACE root")

    def detect(self, site: DrillSite, settings: DrillSettings) -> float | None:
        return None  # a slow service still answers its health checks


SCENARIOS: dict[str, type[Scenario]] = {
    cls.name: cls for cls in (SiteLoss, HostLoss, ServiceCrash, LbBackendFlap, Latency)
}


def scenario(name: str) -> Scenario:
    """The scenario called ``name``; ``InputError`` listing the known ones."""
    if name not in SCENARIOS:
        raise InputError(f"unknown drill scenario {name!r}",
                         hint="scenarios: " + ", ".join(SCENARIOS))
    return SCENARIOS[name]()
