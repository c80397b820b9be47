"""notes: a tiny notes service over HTTP, kept in SQLite (relctl's second sample service).

GET /health, GET /version, PUT /notes/<key> (the body is the note), GET /notes/<key>.
/version answers {"notes": {"version": ..., "python": ...}}, nested, as many services do
(relctl reads it with the JSON pointer /notes/version).
Run: python3 notes_app.py /etc/notes/notes.conf (an INI file, section [notes]: bind,
port, database).
"""

from __future__ import annotations

import configparser
import json
import sqlite3
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

VERSION = (Path(__file__).with_name("VERSION")).read_text().strip()


class Notes:
    """The notes table in one SQLite file."""

    def __init__(self, path: str) -> None:
        self.path = path
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE IF NOT EXISTS notes (key TEXT PRIMARY KEY, body TEXT)")

    def put(self, key: str, body: str) -> None:
        with sqlite3.connect(self.path) as db:
            db.execute("INSERT OR REPLACE INTO notes VALUES (?, ?)", (key, body))

    def get(self, key: str) -> str | None:
        with sqlite3.connect(self.path) as db:
            row = db.execute("SELECT body FROM notes WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])


def handler(notes: Notes) -> type[BaseHTTPRequestHandler]:
    """The request handler class bound to ``notes``."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/health":
                self.reply(200, {"status": "ok"})
            elif self.path == "/version":
                self.reply(200, {"notes": {"version": VERSION,
                                           "python": ".".join(map(str, sys.version_info[:3]))}})
            elif self.path.startswith("/notes/"):
                body = notes.get(self.path[len("/notes/"):])
                self.reply(404, {"error": "no such note"}) if body is None else self.reply(
                    200, {"key": self.path[len("/notes/"):], "body": body})
            else:
                self.reply(404, {"error": "not found"})

        def do_PUT(self) -> None:
            if not self.path.startswith("/notes/"):
                self.reply(404, {"error": "not found"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            notes.put(self.path[len("/notes/"):], self.rfile.read(length).decode())
            self.reply(201, {"stored": self.path[len("/notes/"):]})

        def reply(self, status: int, document: dict[str, str]) -> None:
            data = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")

    return Handler


def main(config_path: str) -> None:
    """Serve forever with the settings of ``config_path``."""
    parser = configparser.ConfigParser()
    if not parser.read(config_path):
        raise SystemExit(f"notes: cannot read {config_path}")
    settings = parser["notes"]
    server = ThreadingHTTPServer((settings["bind"], settings.getint("port")),
                                 handler(Notes(settings["database"])))
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/etc/notes/notes.conf")
