"""HTTP request handler: routing, error handling and access logging."""

from __future__ import annotations

import logging
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from . import db, response, routes
from .config import Config
from .web import HTTPError, Request, Response

log = logging.getLogger("ledger")
MAX_BODY = 64 * 1024


class LedgerServer(ThreadingHTTPServer):
    """Threaded server whose shutdown waits for in-flight requests."""

    daemon_threads = False
    block_on_close = True

    def __init__(self, config: Config) -> None:
        self.config = config
        self.routes = routes.load_routes()
        if ":" in config.bind:
            self.address_family = socket.AF_INET6
        super().__init__((config.bind, config.port), Handler)


class Handler(BaseHTTPRequestHandler):
    """Dispatches requests to the feature handlers."""

    server: LedgerServer
    server_version = "ledger"
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        """Handle GET."""
        self.dispatch("GET")

    def do_POST(self) -> None:
        """Handle POST."""
        self.dispatch("POST")

    def read_body(self) -> bytes:
        """Read the request body, bounded by MAX_BODY."""
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise HTTPError(413, "request body too large")
        return self.rfile.read(length) if length > 0 else b""

    def dispatch(self, method: str) -> None:
        """Route one request and send the JSON response."""
        path = self.path.split("?", 1)[0]
        try:
            resp = self.handle_route(method, path)
        except HTTPError as exc:
            resp = Response(exc.status, {"error": exc.message})
        except db.SchemaMismatchError as exc:
            resp = Response(503, {"error": str(exc)})
        except Exception:  # a bug must still produce a proper 500 response
            log.exception("%s %s failed", method, path)
            resp = Response(500, {"error": "internal server error"})
        self.send_json(resp.status, resp.payload, resp.headers)

    def handle_route(self, method: str, path: str) -> Response:
        """Find and run the handler for ``method path``."""
        found = routes.match(self.server.routes, method, path)
        if isinstance(found, int):
            raise HTTPError(found, "not found" if found == 404 else "method not allowed")
        handler, params = found
        body = self.read_body() if method == "POST" else b""
        return handler(Request(method, path, params, body, self.server.config))

    def send_json(self, status: int, payload: dict[str, Any], extra: dict[str, str]) -> None:
        """Write status, headers and body."""
        body, headers = response.render(payload)
        self.send_response(status)
        for name, value in {**headers, **extra}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Access log through the logging module."""
        log.info("%s %s", self.address_string(), format % args)
