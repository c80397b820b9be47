"""Locust load for ledger DR drills: writes and health reads, steady, through the LB.

Unlike the release gate's load, it does not read back its own writes: after a failover
the backup site has the replica, not the writes made since, and a drill counts the
requests the outage failed, not the data it is known to put at risk (that is the RPO).
"""

from __future__ import annotations

import random

from locust import HttpUser, constant, task


class DrillClient(HttpUser):
    """A teller recording transactions, and a monitor polling health."""

    wait_time = constant(0.05)

    @task(3)
    def record(self) -> None:
        body = {"account": random.choice(["alice", "bob", "carol"]),
                "amount_cents": random.randint(-5000, 5000)}
        with self.client.post("/tx", json=body, name="POST /tx", catch_response=True) as resp:
            if resp.status_code != 201:
                resp.failure(f"status {resp.status_code}")

    @task(1)
    def health(self) -> None:
        self.client.get("/health", name="GET /health")
