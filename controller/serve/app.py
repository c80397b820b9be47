"""The web application of ``relctl serve`` (Starlette, run by uvicorn).

    GET  /                         the team view (?service=&environment=&state= filter history)
    GET  /releases/NAME[?id=N]     one release: host-by-phase grid, gates, report
    GET  /status/SERVICE[.json]    the service's status page for its users
    GET  /events                   server-sent events: ``change`` when the journal moved
    POST /signoff                  a sign-off, with the server's token

Pages are read-only but for ``POST /signoff``, which needs the token of ``--token-file``
from every client. With a token, every client needs it for everything (HTTP Basic, any
user name, or ``Authorization: Bearer``): a proxy on this machine makes remote clients
look like loopback ones. Without one, only loopback clients are served, and a loopback
client must name a loopback host (no DNS rebinding). The journal is read in worker
threads, one connection per thread; one poller reads its change mark while a page
listens, and each page fetches its live part again when told.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import html
import ipaddress
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from controller.engine.signoff import check_slug, record_signoff
from controller.errors import RelctlError
from controller.journal import Journal
from controller.manifest_loader import load_manifest
from controller.models.manifest import Manifest
from controller.reports.release_report import ReleaseFacts
from controller.serve import board, pages

POLL_S = 0.25  # how often the journal's change mark is read while a page listens
KEEPALIVE_S = 15.0
FIELD_MAX = 500
BODY_MAX = 16_384
CSP = ("default-src 'none'; script-src 'sha256-{script}'; style-src 'unsafe-inline'; "
       "img-src 'self' data:; connect-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")


@dataclass
class Settings:
    """What ``relctl serve`` was started with."""

    open_journal: Callable[[], Journal]
    token: str | None = None
    manifests: list[str] = field(default_factory=list)  # globs of manifests with windows
    poll_s: float = POLL_S


class Journals:
    """One journal connection per worker thread (SQLite's connections stay in the thread
    that opened them), all closed at shutdown."""

    def __init__(self, opener: Callable[[], Journal]) -> None:
        self._opener, self._local = opener, threading.local()
        self._all: list[Journal] = []
        self._lock = threading.Lock()

    def get(self) -> Journal:
        journal: Journal | None = getattr(self._local, "journal", None)
        if journal is None:
            journal = self._opener()
            self._local.journal = journal
            with self._lock:
                self._all.append(journal)
        return journal

    def close(self) -> None:
        with self._lock:
            opened, self._all = self._all, []
        for journal in opened:
            with contextlib.suppress(Exception):  # another thread's SQLite connection
                journal.close()


class Changes:
    """The journal's change mark, read while at least one page listens; each listener
    wakes when it moves."""

    def __init__(self, journals: Journals, poll_s: float) -> None:
        self.journals, self.poll_s = journals, poll_s
        self.version = 0
        self.listeners = 0
        self.mark: str | None = None  # the journal's mark, read while someone listens
        self._moved = asyncio.Condition()

    async def _read(self) -> str:
        return await run_in_threadpool(lambda: self.journals.get().change_mark())

    async def run(self) -> None:
        while True:
            if self.listeners:
                try:
                    now = await self._read()
                except RelctlError:  # the journal's server away for a moment: try again
                    await asyncio.sleep(self.poll_s)
                    continue
                if self.mark is not None and now != self.mark:
                    async with self._moved:
                        self.version += 1
                        self._moved.notify_all()
                self.mark = now
            await asyncio.sleep(self.poll_s)

    async def baseline(self) -> int:
        """The mark as it is before a listener's stream opens, and the version its stream
        counts from (its page reads itself again on open, LIVE_SCRIPT): a change after
        that page read wakes it. Without it, the first listener's poll took a change made
        between the page's rendering and its stream as the baseline, and the page never
        showed it."""
        if not self.listeners:  # else the poller keeps it current
            with contextlib.suppress(RelctlError):
                self.mark = await self._read()
        return self.version

    async def _moved_since(self, seen: int) -> None:
        async with self._moved:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._moved.wait_for(lambda: self.version != seen),
                                       KEEPALIVE_S)

    async def stream(self, seen: int | None = None) -> AsyncIterator[str]:
        """A page's event stream: ``change`` each time the mark moves (after version
        ``seen``, ``baseline``'s), a comment every ``KEEPALIVE_S`` otherwise."""
        self.listeners += 1
        seen = self.version if seen is None else seen
        try:
            yield "retry: 1000\n\n"
            while True:
                await self._moved_since(seen)
                if self.version != seen:
                    seen = self.version
                    yield f"event: change\ndata: {seen}\n\n"
                else:
                    yield ": keep-alive\n\n"
        finally:
            self.listeners -= 1


def is_loopback(request: Request) -> bool:
    """The client's address is a loopback one."""
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def loopback_name(host_header: str) -> bool:
    """The ``Host`` a request names is a loopback address or ``localhost``."""
    name = host_header.rsplit(":", 1)[0] if not host_header.endswith("]") else host_header
    name = name.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def presented_token(request: Request) -> str | None:
    """The token an ``Authorization`` header carries (Bearer, or Basic's password)."""
    kind, _, value = request.headers.get("authorization", "").partition(" ")
    if kind.lower() == "bearer":
        return value.strip()
    if kind.lower() == "basic":
        try:
            return base64.b64decode(value.strip(), validate=True).decode().partition(":")[2]
        except (ValueError, UnicodeDecodeError):
            return None
    return None


def same_token(given: str | None, token: str | None) -> bool:
    """``given`` is the server's token (compared in constant time)."""
    return (token is not None and given is not None
            and hmac.compare_digest(given.encode(), token.encode()))


def create_app(settings: Settings) -> Starlette:
    """The application; ``settings.open_journal`` opens one journal connection."""
    return Endpoints(settings).app()


def _csp_headers() -> dict[str, str]:
    body = pages.LIVE_SCRIPT.removeprefix("<script>").removesuffix("</script>")
    digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
    return {"Content-Security-Policy": CSP.format(script=digest),
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
            "Cache-Control": "no-store"}


class Endpoints:
    """The routes, over one pool of journal connections and one change poller."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.journals = Journals(settings.open_journal)
        self.changes = Changes(self.journals, settings.poll_s)
        self.headers = _csp_headers()

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/", self.team), Route("/releases/{name}", self.release),
            Route("/status/{service}", self.status), Route("/events", self.events),
            Route("/signoff", self.signoff, methods=["POST"]),
        ], lifespan=self.lifespan, exception_handlers={RelctlError: self.unavailable},
            middleware=[Middleware(Guard, token=self.settings.token, headers=self.headers)])

    def _html(self, request: Request, title: str, live: str, status: int = 200,
              nav: bool = True) -> HTMLResponse:
        """The live part alone for the page's script (``X-Fragment``), else the page."""
        body = live if request.headers.get("x-fragment") else pages.page(title, live, nav=nav)
        return HTMLResponse(body, status, headers=self.headers)

    async def _read(self, fn: Callable[[Journal], Any]) -> Any:
        return await run_in_threadpool(lambda: fn(self.journals.get()))

    async def unavailable(self, request: Request, error: Exception) -> Response:
        """The journal could not be read (its server is down, a bad row): 503, said once,
        no traceback; the page's script tries again on the next change."""
        message = error.message if isinstance(error, RelctlError) else str(error)
        return PlainTextResponse(f"relctl serve: the journal could not be read: {message}",
                                 503, headers=self.headers)

    async def team(self, request: Request) -> Response:
        q = request.query_params
        filters = board.Filters(*(q.get(k) or None for k in ("service", "environment",
                                                             "state")))
        view = await self._read(lambda j: board.team_view(j, filters))
        return self._html(request, "relctl",
                          pages.team_html(view, can_sign=self.settings.token is not None))

    async def release(self, request: Request) -> Response:
        name, wanted = request.path_params["name"], request.query_params.get("id", "")

        def facts(journal: Journal) -> tuple[ReleaseFacts, board.Grid] | None:
            record = journal.find_release(int(wanted) if wanted.isdigit() else name)
            if record is None or record.name != name:
                return None
            found = ReleaseFacts.read(journal, record)
            return found, board.grid(found)

        found = await self._read(facts)
        if found is None:
            return self._html(request, "not found",
                              f"<p>no release {html.escape(name)} in the journal</p>", 404)
        return self._html(request, f"release {name}", pages.release_html(*found))

    async def status(self, request: Request) -> Response:
        service = request.path_params["service"]
        as_json = service.endswith(".json")
        service = service.removesuffix(".json")
        manifests = await run_in_threadpool(window_manifests, self.settings.manifests)

        def view(journal: Journal) -> board.StatusView | None:
            known = {s for s, _ in journal.scopes()} | {m.service for m in manifests}
            return board.status_view(journal, service, manifests) if service in known else None

        found = await self._read(view)
        if as_json:
            return JSONResponse(found.as_dict() if found else {"error": "no such service"},
                                200 if found else 404, headers=self.headers)
        if found is None:
            return self._html(request, "not found", "<p>no such service</p>", 404, nav=False)
        return self._html(request, f"{service} status", pages.status_html(found), nav=False)

    async def events(self, request: Request) -> Response:
        seen = await self.changes.baseline()  # before the response opens
        return StreamingResponse(self.changes.stream(seen), media_type="text/event-stream",
                                 headers={**self.headers, "X-Accel-Buffering": "no"})

    async def signoff(self, request: Request) -> Response:
        form = await _form(request)
        fields = {k: form.get(k, [""])[0][:FIELD_MAX] for k in
                  ("release", "role", "by", "note", "sha256", "token")}
        if self.settings.token is None:
            return PlainTextResponse("sign-off from the page is off: start relctl serve "
                                     "with --token-file", 403, headers=self.headers)
        if not same_token(fields["token"], self.settings.token):
            await asyncio.sleep(1.0)  # a guess costs a second
            return PlainTextResponse("wrong token", 403, headers=self.headers)
        try:
            said = await self._read(lambda j: _sign(j, fields))
        except RelctlError as error:
            return PlainTextResponse(f"not signed off: {error.message}", 400,
                                     headers=self.headers)
        return RedirectResponse(f"/?signed={quote(said)}", 303, headers=self.headers)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(self.changes.run())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self.journals.close()


class Guard:
    """In front of every request: with a token, every client presents it (without one,
    only loopback clients are served); a POST must come from one of the server's own
    pages (same origin)."""

    def __init__(self, app: ASGIApp, token: str | None, headers: dict[str, str]) -> None:
        self.app, self.token, self.headers = app, token, headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            request = Request(scope)
            refusal: Response | None = None
            if is_loopback(request) and not loopback_name(request.headers.get("host", "")):
                # a page of another site whose name now resolves to 127.0.0.1 (DNS
                # rebinding) must not read what loopback clients may read without a token
                refusal = PlainTextResponse("relctl serve: ask for it by a loopback address "
                                            "(127.0.0.1, localhost)", 421, headers=self.headers)
            elif ((self.token is not None or not is_loopback(request))
                  and not same_token(presented_token(request), self.token)):
                # with a token every client presents it: behind a proxy on this machine
                # every remote client looks like loopback
                refusal = PlainTextResponse(
                    "relctl serve: this address needs the token", 401,
                    headers={"WWW-Authenticate": 'Basic realm="relctl"', **self.headers})
            elif request.method == "POST" and not _same_origin(request):
                refusal = PlainTextResponse("cross-origin request refused", 403,
                                            headers=self.headers)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _form(request: Request) -> dict[str, list[str]]:
    """The page's form (URL-encoded, at most ``BODY_MAX`` bytes; anything else is empty)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip()
    if kind != "application/x-www-form-urlencoded":
        return {}
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > BODY_MAX:
            return {}
    try:
        return parse_qs(body.decode("utf-8", "replace"), max_num_fields=20)
    except ValueError:  # more fields than a sign-off has
        return {}


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1] == host


def _sign(journal: Journal, fields: dict[str, str]) -> str:
    """Record the sign-off the form asks for, with ``relctl signoff``'s rules: the
    manifest apply waits for, unchanged since the page showed it."""
    release = fields["release"]
    check_slug("release", release)
    request = journal.signoff_request(release)
    if request is None or request.manifest.sha256 != fields["sha256"]:
        raise RelctlError(f"{release}: apply no longer waits for the manifest this page "
                          "showed; reload it")
    done = record_signoff(journal, release, fields["role"] or None, fields["by"],
                          fields["note"], request.manifest)
    journal.log(None, f"sign-off of {release} as {done.role} by {done.by} from relctl serve")
    return release


_CACHE: dict[Path, tuple[float, Manifest | None]] = {}


def window_manifests(globs: list[str]) -> list[Manifest]:
    """The manifests the ``--manifests`` globs name that declare a window (each loaded
    again only when its file changed; one that does not load is skipped)."""
    found = []
    for path in _expand(globs):
        try:
            stamp = path.stat().st_mtime
        except OSError:
            continue
        cached = _CACHE.get(path)
        if cached is None or cached[0] != stamp:
            try:
                manifest: Manifest | None = load_manifest(path)
            except RelctlError:
                manifest = None
            _CACHE[path] = cached = (stamp, manifest)
        if cached[1] is not None and cached[1].window is not None:
            found.append(cached[1])
    return found


def _expand(globs: list[str]) -> Iterator[Path]:
    for pattern in globs:
        path = Path(pattern).expanduser()
        anchor = Path(path.anchor) if path.is_absolute() else Path()
        relative = str(path.relative_to(anchor)) if path.is_absolute() else pattern
        yield from sorted(p for p in anchor.glob(relative) if p.is_file())
