"""Route table assembled from every module in the ``ledger.features`` package.

A release adds an endpoint by shipping one more feature module; each module
exposes ``ROUTES``: a list of ``(method, path regex, handler)``.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Callable

from . import features
from .web import Request, Response

Handler = Callable[[Request], Response]
Route = tuple[str, "re.Pattern[str]", Handler]


def load_routes() -> list[Route]:
    """Import all feature modules (sorted by name) and compile their routes."""
    table: list[Route] = []
    for info in sorted(pkgutil.iter_modules(features.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{features.__name__}.{info.name}")
        for method, pattern, handler in getattr(module, "ROUTES", []):
            table.append((method, re.compile(f"^{pattern}$"), handler))
    return table


def match(table: list[Route], method: str, path: str) -> tuple[Handler, tuple[str, ...]] | int:
    """Find the handler for a request, or return 404/405."""
    allowed = False
    for route_method, regex, handler in table:
        found = regex.match(path)
        if not found:
            continue
        if route_method == method:
            return handler, found.groups()
        allowed = True
    return 405 if allowed else 404
