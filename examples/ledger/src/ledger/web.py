"""Tiny request/response types used by the route handlers."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .config import Config


class HTTPError(Exception):
    """Abort a request with an HTTP status and a JSON error message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Request:
    """What a handler gets: the matched route parameters and the body."""

    method: str
    path: str
    params: tuple[str, ...]
    body: bytes
    config: Config

    def json(self) -> dict[str, Any]:
        """Decode the body as a JSON object or raise a 400."""
        try:
            data = json.loads(self.body or b"null")
        except ValueError as exc:
            raise HTTPError(400, f"invalid JSON body: {exc}") from exc
        if not isinstance(data, dict):
            raise HTTPError(400, "JSON body must be an object")
        return data


@dataclass
class Response:
    """A JSON response."""

    status: int
    payload: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
