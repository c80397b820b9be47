"""Locust load for a canary analysis of ledger: reads only (GET /health, GET /version).

ledger keeps its data on each host, so behind a round-robin balancer a transaction written
on one host is not read back on another: an analysis of an active/active ledger judges
the reads, which every host answers alike.
"""

from __future__ import annotations

from locust import HttpUser, between, task


class LedgerReader(HttpUser):
    """A client reading what every host answers."""

    wait_time = between(0.01, 0.05)

    @task(3)
    def health(self) -> None:
        self.client.get("/health", name="GET /health")

    @task(1)
    def version(self) -> None:
        self.client.get("/version", name="GET /version")
