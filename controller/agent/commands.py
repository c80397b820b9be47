"""The host agent's one entry point: read one request from stdin, answer one reply.

The last of the agent's sources (``controller/adapters/host_agent.py`` sends them all,
then the request, on stdin; the ``python -c`` program that reads them calls ``serve``).
Every command and its types are in ``protocol.py``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

if __name__ != "relctl_agent":  # on a host, the other sources ran first in this namespace
    from controller.agent.host_store import capture, restore, services, verify
    from controller.agent.litestream_agent import litestream
    from controller.agent.protocol import hello, python_ok
    from controller.agent.sessions import stop_sessions
    from controller.agent.snapshot_agent import copy_data, load_data

HANDLERS: dict[str, Any] = {
    "capture": capture, "restore": restore, "verify": verify, "services": services,
    "copy_data": copy_data, "load_data": load_data, "litestream": litestream,
    "stop_sessions": stop_sessions, "hello": hello}


def serve() -> int:
    """Read one JSON request from stdin, print one JSON reply; exit 0 when it is ok."""
    try:
        too_old = python_ok()
        request = json.loads(sys.stdin.buffer.read())
        if too_old:
            reply = {"ok": False, "error": too_old}
        elif request.get("command") not in HANDLERS:
            reply = {"ok": False, "error": f"unknown command {request.get('command')!r}"}
        else:
            reply = HANDLERS[request["command"]](request)
    except Exception as exc:  # every failure is reported as JSON for the controller
        reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    sys.stdout.write(json.dumps(reply))
    return 0 if reply.get("ok") else 1
