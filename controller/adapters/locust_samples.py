"""relctl's Locust plugin, loaded beside the user's locustfile (``-f USER.py,THIS.py``) for
a canary analysis: for every request, the server that answered as the load balancer names
it (HAProxy's ``X-Served-By`` response header, not what the service says of itself), the
latency and whether it succeeded, one line per request into ``$RELCTL_LOCUST_SAMPLES.PID``
(each Locust process its own file). It defines no User: the user's file does.

Runs inside Locust (gevent-patched), never imported by relctl itself.
"""

from __future__ import annotations

import atexit
import os
from typing import IO, Any

from locust import events

SAMPLES_ENV = "RELCTL_LOCUST_SAMPLES"
_out: list[IO[str]] = []


def _file() -> IO[str] | None:
    base = os.environ.get(SAMPLES_ENV)
    if not base:
        return None
    if not _out:  # opened in the process that answers (after Locust's fork)
        _out.append(open(f"{base}.{os.getpid()}", "a", encoding="utf-8"))  # noqa: SIM115
        atexit.register(_flush)
    return _out[0]


def _flush(**_kwargs: Any) -> None:
    for handle in _out:
        handle.flush()


def _sample(request_type: str, name: str, response_time: float, response_length: int,
            response: Any = None, exception: BaseException | None = None,
            **_kwargs: Any) -> None:
    out = _file()
    if out is None:
        return
    headers = getattr(response, "headers", None)
    server = str(headers.get("X-Served-By", "")) if headers is not None else ""
    out.write(f"{server.replace(',', ' ').strip()},{float(response_time):.3f},"
              f"{0 if exception else 1}\n")


# Locust's event hooks are untyped: registered here, the functions above stay typed.
events.request.add_listener(_sample)  # type: ignore[no-untyped-call]
events.test_stop.add_listener(_flush)  # type: ignore[no-untyped-call]
events.quitting.add_listener(_flush)  # type: ignore[no-untyped-call]
