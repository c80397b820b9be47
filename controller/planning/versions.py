"""The running version of a service, read the way the service reports it.

A continuity plan names where (``version_path``) and how: a JSON pointer (RFC 6901,
``version_pointer``, e.g. ``/datasette/version``) or a regular expression on the body
(``version_pattern``). A version that cannot be read is an answer with a reason, never
a version: "None" is not a release.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from jsonpointer import JsonPointer, JsonPointerException


@dataclass(frozen=True)
class VersionRead:
    """The version read from one answer, or why none could be."""

    version: str | None
    problem: str = ""


def read_version(body: bytes, pointer: str, pattern: str | None) -> VersionRead:
    """The version in ``body``: ``pattern``'s first group (or whole match) when given,
    else the JSON value at ``pointer``, which must be a string or a number."""
    text = body.decode("utf-8", errors="replace")
    if pattern is not None:
        match = re.search(pattern, text)
        if match is None:
            return VersionRead(None, f"version_pattern {pattern!r} does not match the answer "
                               f"{_excerpt(text)}")
        found = match.group(1) if match.re.groups else match.group(0)
        return VersionRead(found) if found else VersionRead(None, "version_pattern matched "
                                                             "an empty version")
    try:
        document = json.loads(text)
    except ValueError:
        return VersionRead(None, f"the answer is not JSON ({_excerpt(text)}): set "
                           "version_pattern for a service that reports its version as text")
    try:
        value = JsonPointer(pointer).resolve(document)
    except JsonPointerException:
        return VersionRead(None, f"version_pointer {pointer!r} finds nothing in the answer "
                           f"{_excerpt(text)}")
    if isinstance(value, bool) or not isinstance(value, str | int | float) or value == "":
        return VersionRead(None, f"version_pointer {pointer!r} finds {_excerpt(json.dumps(value))}"
                           ", not a version (a string or a number)")
    return VersionRead(str(value))


def _excerpt(text: str, size: int = 120) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= size else flat[:size] + "...")
