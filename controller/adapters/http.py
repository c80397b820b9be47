"""Small HTTP probes (stdlib): health checks and critical-function checks. Never raises."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Answer:
    """What came back: the status (0 when nothing did), body, server, and time taken."""

    status: int
    body: bytes
    served_by: str
    seconds: float
    error: str = ""

    def json(self) -> Any:
        """The body as JSON, or None."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None


def request(method: str, url: str, body: Any = None, timeout: float = 2.0) -> Answer:
    """One request; connection errors and timeouts come back as status 0."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    started = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return Answer(response.status, response.read(),
                          response.headers.get("X-Served-By", ""), time.monotonic() - started)
    except urllib.error.HTTPError as error:
        return Answer(error.code, error.read() or b"", error.headers.get("X-Served-By", ""),
                      time.monotonic() - started)
    except (OSError, ValueError) as error:
        return Answer(0, b"", "", time.monotonic() - started, str(error)[:200])
