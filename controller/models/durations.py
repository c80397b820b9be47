"""Durations as people write them: ``90``, ``1.5s``, ``250ms``, ``5m``, ``72h``, ``1d``."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import BeforeValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
PATTERN = re.compile(r"^\s*(\d{1,12}(?:\.\d{1,9})?)\s*(ms|s|m|h|d)?\s*$")
MAX_SECONDS = 366 * 86400.0  # a year: longer is a typo, and would overflow date arithmetic


def parse_duration(value: Any) -> float:
    """Seconds in ``value``: a number of seconds, or a number with a unit (ms s m h d)."""
    if isinstance(value, bool):
        raise PydanticCustomError("duration", "a duration, not a boolean")
    if isinstance(value, int | float):
        return _bounded(value)
    match = PATTERN.match(value) if isinstance(value, str) else None
    if not match:
        raise PydanticCustomError(
            "duration", "not a duration: {value} (write e.g. 30, 250ms, 30s, 5m, 2h, 1d)",
            {"value": repr(value)[:100]})
    return _bounded(float(match.group(1)) * UNITS[match.group(2) or "s"])


def _bounded(seconds: float) -> float:
    """``seconds`` as a float, when finite and from 0 to ``MAX_SECONDS`` (compared before
    the conversion: an integer of 400 digits is no float)."""
    if not (0 <= seconds <= MAX_SECONDS and math.isfinite(seconds)):
        raise PydanticCustomError("duration", "a duration from 0 to 366d, got {value}",
                                  {"value": repr(seconds)[:40]})
    return float(seconds)


def duration_text(seconds: float | None) -> str:
    """``format_duration``, or "—" for a figure not measured."""
    return "—" if seconds is None else format_duration(seconds)


def format_duration(seconds: float) -> str:
    """A short human form: ``850ms``, ``4.2s``, ``5m``, ``2h30m``."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s".replace(".0s", "s")
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m" if minutes else f"{hours}h"
    return f"{minutes}m{secs:02d}s" if secs else f"{minutes}m"


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema({"anyOf": [{"type": "number", "minimum": 0},
                              {"type": "string", "pattern": PATTERN.pattern}]}),
]
"""Seconds, written as a number or with a unit."""
