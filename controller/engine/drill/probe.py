"""What a drill measures while it runs: the probe through the LB and the moments."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from controller.engine.continuity import Continuity, rounded


@dataclass
class Probe:
    """Requests through the LB every ``interval`` seconds, in a thread: the outage as
    users see it (first failure to the first success after the last one)."""

    ctx: Continuity
    interval: float = 0.05
    samples: list[tuple[float, bool, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        # A read-only check when the plan has one: the probe runs every 50 ms.
        functions = self.ctx.plan.by_priority()
        function = next((f for f in functions if f.check.method in ("GET", "HEAD")),
                        functions[0])
        check = function.check

        def loop() -> None:
            while not self._stop.is_set():
                answer = self.ctx.site.check(function)
                self.samples.append((time.monotonic(), answer.status == check.expect_status,
                                     answer.served_by))
                self._stop.wait(self.interval)

        self._thread = threading.Thread(target=loop, name="relctl-probe", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def figures(self, since: float) -> dict[str, Any]:
        after = [s for s in self.samples if s[0] >= since]
        failed = [s for s in after if not s[1]]
        outage = 0.0 if after else None  # the probe ran and no request failed: no outage
        if failed:
            recovered = [s for s in after if s[1] and s[0] > failed[-1][0]]
            outage = (recovered[0][0] if recovered else after[-1][0]) - failed[0][0]
        return {"probe_requests": len(after), "probe_failures": len(failed),
                "outage_s": None if outage is None else round(outage, 3)}

    def served_by_after(self, moment: float) -> list[str]:
        return sorted({s[2] for s in self.samples if s[0] >= moment and s[1] and s[2]})


@dataclass
class Moments:
    """When things happened in a drill (``time.monotonic()``; ``*_wall``: epoch seconds)."""

    per_function: dict[str, float | None]  # seconds from the fault to verified
    fault: float | None = None
    fault_wall: float | None = None
    detected: float | None = None
    switched: float | None = None
    recovered: float | None = None  # every function verified
    replica_wall: float | None = None

    def record_recovery(self, verified_at: dict[str, float | None]) -> None:
        assert self.fault is not None
        for name, at in verified_at.items():
            self.per_function[name] = None if at is None else at - self.fault
        done = [at for at in verified_at.values() if at is not None]
        self.recovered = max(done) if done and len(done) == len(verified_at) else None

    def figures(self, data_at_risk: bool) -> dict[str, Any]:
        if self.fault is None:
            return {}
        rpo = None
        if data_at_risk and self.replica_wall is not None and self.fault_wall is not None:
            rpo = round(max(0.0, self.fault_wall - self.replica_wall), 3)
        return {
            "detection_s": rounded(self.detected - self.fault if self.detected else None),
            "rto_s": rounded(self.recovered - self.fault if self.recovered else None),
            "rto_from_detection_s": rounded(self.recovered - self.detected
                                           if self.recovered and self.detected else None),
            "rpo_s": rpo,
        }

    def relative(self, started: float) -> dict[str, float | None]:
        """The moments in seconds since the drill started (the HTML report's markers)."""
        return {name: rounded(at - started if at is not None else None)
                for name, at in (("fault_s", self.fault), ("detected_s", self.detected),
                                 ("switch_s", self.switched),
                                 ("recovered_s", self.recovered))}
