"""Locust load for the ledger service: writes and reads transactions, checks versions.

relctl runs this headless in a subprocess against the load balancer, once before a
release (baseline) and once after (candidate), and compares the figures.
"""

from __future__ import annotations

import random

from locust import HttpUser, between, task


class LedgerClient(HttpUser):
    """A client that records transactions and reads them back."""

    wait_time = between(0.05, 0.15)

    def on_start(self) -> None:
        self.ids: list[int] = []

    @task(3)
    def record(self) -> None:
        body = {"account": random.choice(["alice", "bob", "carol"]),
                "amount_cents": random.randint(-5000, 5000)}
        with self.client.post("/tx", json=body, name="POST /tx", catch_response=True) as resp:
            if resp.status_code == 201:
                self.ids.append(int(resp.json()["id"]))
            else:
                resp.failure(f"status {resp.status_code}")

    @task(3)
    def read_back(self) -> None:
        if self.ids:
            self.client.get(f"/tx/{random.choice(self.ids)}", name="GET /tx/<id>")

    @task(1)
    def version(self) -> None:
        self.client.get("/version", name="GET /version")
