"""Locust load for tests: GET /health as fast as the users can (see tests/http_target.py)."""

from __future__ import annotations

from locust import HttpUser, constant, task


class HealthClient(HttpUser):
    """A monitor polling health with no pause."""

    wait_time = constant(0)

    @task
    def health(self) -> None:
        self.client.get("/health", name="GET /health")
