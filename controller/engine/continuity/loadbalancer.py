"""The load balancer in front of both sites, behind one protocol.

Continuity asks a load balancer for five things: which servers take the traffic
(``activate``), a server's health forced down or up (drills), whether a server is seen up
and which are in maintenance, the requests still in progress on servers (a failback waits
for them), and its state saved so a reload keeps it. HAProxy's
runtime API does all of it without a reload; another load balancer plugs in as a class
registered under its ``lb.kind`` in ``LOAD_BALANCERS``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from controller.adapters.ansible import PlaybookRun, failure_summary, run_playbook
from controller.adapters.haproxy import RuntimeApi
from controller.engine.environment import Environment
from controller.errors import LabError
from controller.models.continuity import ContinuityPlan
from controller.paths import bundled_playbook


class LoadBalancer(Protocol):
    """What failover, failback and drills need from the load balancer."""

    def activate(self, active: list[str], standby: list[str]) -> None:
        """``active`` hosts take the traffic, ``standby`` ones none (at once, no reload)."""

    def force_health(self, host: str, up: bool) -> None:
        """Override the health checks' verdict on ``host`` (drills flap a backend)."""

    def is_up(self, host: str) -> bool:
        """Whether the load balancer sends ``host`` traffic now."""

    def in_maintenance(self, hosts: list[str]) -> list[str]:
        """Those of ``hosts`` the load balancer keeps out of service on purpose."""

    def in_flight(self, hosts: list[str]) -> int:
        """Requests the load balancer has in progress on ``hosts`` now."""

    def persist(self) -> str | None:
        """Save the servers' states so a reload keeps them; returns a warning on failure."""

    def lacks(self, hosts: list[str]) -> str | None:
        """What the load balancer lacks to serve ``hosts`` (its backend, a server per
        host), or None; raises ``LabError`` when it does not answer."""


@dataclass(frozen=True)
class HaproxyRuntime:
    """HAProxy through its runtime API (TCP), server names as the plan maps them."""

    api: RuntimeApi
    backend: str
    servers: dict[str, str]  # inventory host -> HAProxy server name, when they differ
    plan: ContinuityPlan
    env: Environment

    def server(self, host: str) -> str:
        return self.servers.get(host, host)

    def activate(self, active: list[str], standby: list[str]) -> None:
        for host in active:
            self.api.set_state(self.backend, self.server(host), "ready")
        for host in standby:
            self.api.set_state(self.backend, self.server(host), "maint")

    def force_health(self, host: str, up: bool) -> None:
        self.api.set_health(self.backend, self.server(host), "up" if up else "down")

    def _status(self) -> dict[str, str]:
        return {s.server: s.status for s in self.api.servers() if s.backend == self.backend}

    def is_up(self, host: str) -> bool:
        return self._status().get(self.server(host), "").startswith("UP")

    def in_maintenance(self, hosts: list[str]) -> list[str]:
        status = self._status()
        return [h for h in hosts if status.get(self.server(h), "").startswith("MAINT")]

    def in_flight(self, hosts: list[str]) -> int:
        names = {self.server(h) for h in hosts}
        return sum(s.sessions for s in self.api.servers()
                   if s.backend == self.backend and s.server in names)

    def lacks(self, hosts: list[str]) -> str | None:
        servers = self.api.servers()
        backends = sorted({s.backend for s in servers})
        if self.backend not in backends:
            return (f"HAProxy at {self.api.endpoint} has no backend {self.backend!r} "
                    f"(backends: {', '.join(backends) or 'none'}); set lb.backend")
        status = self._status()
        missing = [h for h in hosts if self.server(h) not in status]
        if missing:
            return (f"backend {self.backend!r} has no server for "
                    + ", ".join(f"{h} ({self.server(h)!r})" for h in missing)
                    + f" (servers: {', '.join(sorted(status))}); map them in lb.servers")
        return None

    def persist(self) -> str | None:
        try:
            states = self.api.server_states()
        except LabError as error:
            return error.message
        env, lb = self.env, self.plan.lb
        result = run_playbook(PlaybookRun(
            playbook=bundled_playbook("lb_persist_state.yml"), inventory=env.inventory,
            ansible_cfg=env.ansible_cfg, runs_dir=env.runs_dir,
            extravars={"relctl_lb_state": states, "relctl_state_file": lb.state_file,
                       "lb_target": lb.group}, label="lb-persist"))
        return None if result.succeeded else f"LB state not persisted: {failure_summary(result)}"


def _haproxy(plan: ContinuityPlan, address: str, env: Environment) -> LoadBalancer:
    return HaproxyRuntime(RuntimeApi(f"{address}:{plan.lb.runtime_api_port}"), plan.backend,
                          dict(plan.lb.servers), plan, env)


LOAD_BALANCERS: dict[str, Callable[[ContinuityPlan, str, Environment], LoadBalancer]] = {
    "haproxy": _haproxy,
}


def lb_for(plan: ContinuityPlan, address: str, env: Environment) -> LoadBalancer:
    """The load balancer of the plan's ``lb.kind`` at ``address``."""
    return LOAD_BALANCERS[plan.lb.kind](plan, address, env)
