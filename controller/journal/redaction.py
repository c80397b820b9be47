"""Mask secrets before anything is written to the journal."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

SECRET_KEY = re.compile(r"password|passwd|secret|token|key", re.IGNORECASE)
MASK = "***"


def redact(value: object) -> object:
    """A copy of ``value`` with the values of secret-looking keys masked, at any depth.

    A key is secret-looking when it contains password, secret, token or key (any case).
    """
    if isinstance(value, Mapping):
        return {k: _masked(k, v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def _masked(key: object, value: object) -> object:
    if value is not None and isinstance(key, str) and SECRET_KEY.search(key):
        return MASK
    return redact(value)


def to_json(value: object) -> str:
    """Redacted, compact JSON; values JSON cannot hold (paths, times) become strings."""
    return json.dumps(redact(value if value is not None else {}), default=str, sort_keys=True)
