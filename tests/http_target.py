"""A tiny HTTP service on a loopback address, for load gates to measure in tests.

It answers ``GET /health`` with 200 from a thread of the test process; ``stop`` shuts it
down. Only ever bound to 127.0.0.0/8.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.pg_cluster import free_port

LOCUSTFILE = Path(__file__).resolve().parent / "load" / "health.py"


class _Health(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = b"ok\n" if self.path == "/health" else b"not found\n"
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


class HealthServer:
    """``with HealthServer("127.0.70.2") as server: server.url``"""

    def __init__(self, address: str, port: int | None = None) -> None:
        self.server = ThreadingHTTPServer((address, port or free_port(address)), _Health)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
