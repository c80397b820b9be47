"""Serialisation of JSON responses."""

from __future__ import annotations

import json
from typing import Any


def render(payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """Encode ``payload``; return the body and the headers to send."""
    body = json.dumps(payload, sort_keys=True).encode("utf-8")
    return body, {"Content-Type": "application/json"}
