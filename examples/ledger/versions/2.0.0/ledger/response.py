"""Serialisation of JSON responses, with an integrity signature header."""

from __future__ import annotations

import json
from typing import Any

from . import signing


def render(payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """Encode ``payload``; return the body and the headers to send."""
    body = json.dumps(payload, sort_keys=True).encode("utf-8")
    headers = {"Content-Type": "application/json", "X-Ledger-Signature": signing.sign(body)}
    return body, headers
