"""relctl's host agent run on this machine exactly as a host runs it: the ``python -c``
program reading its sources, then one request, from stdin."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from controller.adapters.host_agent import AgentProgram


def agent(request: Any, python: str = sys.executable, timeout: float = 120) -> dict[str, Any]:
    """The agent's reply to ``request`` (its exit code agrees with ``ok``)."""
    program = AgentProgram.load()
    result = subprocess.run([python, "-c", program.boot], input=program.stdin(request),
                            capture_output=True, check=False, timeout=timeout)
    assert result.stdout, result.stderr
    reply: dict[str, Any] = json.loads(result.stdout)
    assert (result.returncode == 0) == bool(reply["ok"]), result.stderr
    return reply
