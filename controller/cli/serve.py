"""``relctl serve``: the team view of releases and drills, and each service's status page,
live from the journal (``controller.serve``)."""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import stat
from pathlib import Path

import click
from rich.markup import escape

from controller.cli.context import AppContext
from controller.cli.output import err_console
from controller.errors import InputError


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback needs --token-file.")
@click.option("--port", type=click.IntRange(1, 65535), default=8765, show_default=True,
              help="Port to listen on.")
@click.option("--token-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A file (mode 0600, yours) holding the token every client then "
                   "presents (HTTP Basic password or Bearer); it also signs off from the page.")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Serve HTTPS with this certificate (PEM); needed, with "
                                 "--tls-key, on anything but loopback.")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="The certificate's private key (PEM).")
@click.option("--manifests", "globs", multiple=True, metavar="GLOB",
              help="Release manifests whose change windows the status pages announce "
                   "(repeatable), e.g. 'releases/*.yml'.")
@click.pass_obj
def serve(app: AppContext, host: str, port: int, token_file: Path | None,
          tls_cert: Path | None, tls_key: Path | None, globs: tuple[str, ...]) -> None:
    """Serve the team view and the status pages over HTTP until stopped (Ctrl-C).

    \b
    /                       environments, releases in flight (host-by-phase grid,
                            live), locks and their holders, sign-offs waiting, drills,
                            replication, history (?service=&environment=&state=)
    /releases/NAME          one release: grid, gates, latency chart, report
    /status/SERVICE[.json]  the status page for the service's users: planned
                            windows (--manifests), a release or failover in progress,
                            recent drills; no host names, figures or secrets

    \b
    Pages update themselves (server-sent events) while they are open. Everything is
    read-only but sign-off, which needs the token (each sign-off is journaled with the
    name given, with relctl signoff's rules). With --token-file every client presents
    the token (HTTP Basic password, or Bearer); without it, only loopback clients are
    served. It reads the same journal as every command (--journal, $RELCTL_JOURNAL,
    --state-dir).

    \b
    Examples:
      relctl serve
      relctl serve --manifests 'releases/*.yml' --token-file ~/.config/relctl/token
      relctl --journal postgresql://relctl@db/relctl serve --host 0.0.0.0 \\
          --token-file /etc/relctl/token --tls-cert cert.pem --tls-key key.pem

    Anything but loopback needs --token-file and --tls-cert/--tls-key.

    Exit codes: 0 stopped, 2 invalid option or token file, or the address is taken.
    """
    token = read_token(token_file) if token_file is not None else None
    if (tls_cert is None) != (tls_key is None):
        raise InputError("--tls-cert and --tls-key go together")
    if not _loopback(host) and (token is None or tls_cert is None):
        raise InputError(f"--host {host} is not a loopback address: pages there need "
                         "--token-file, and --tls-cert/--tls-key (the token must not cross "
                         "the network in clear)", hint="relctl serve --host 127.0.0.1 "
                         "--token-file FILE, behind your own HTTPS proxy")
    listener = _listen(host, port)
    journal = app.journal()  # opened once here: a bad --journal fails now, exit 2 or 7
    where = journal.where
    journal.close()

    import uvicorn  # noqa: PLC0415 - only this command needs the web server

    from controller.serve.app import Settings, create_app  # noqa: PLC0415

    served = create_app(Settings(app.journal, token, list(globs)))
    scheme = "https" if tls_cert else "http"
    err_console.print(escape(f"relctl serve: {scheme}://{_url_host(host)}:{port}/ (journal "
                             f"{where}); Ctrl-C stops it"))
    server = uvicorn.Server(uvicorn.Config(
        served, log_level="warning", access_log=False, timeout_graceful_shutdown=2,
        lifespan="on", ssl_certfile=tls_cert, ssl_keyfile=tls_key))
    # uvicorn stops gracefully on SIGINT/SIGTERM, then raises the signal again for the
    # handler it found: a quiet one, so that a stop asked for is exit 0.
    for stop in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop, lambda _sig, _frame: None)
    server.run(sockets=[listener])


def read_token(path: Path) -> str:
    """The token in ``path``: a file of this user's, not readable by others, not empty."""
    try:
        info = path.stat()
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"--token-file {path}: cannot read it ({error})") from None
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"--token-file {path}: not a regular file")
    if info.st_mode & 0o077 or info.st_uid != os.getuid():
        raise InputError(f"--token-file {path}: others may read it (mode "
                         f"{stat.S_IMODE(info.st_mode):04o}, owner uid {info.st_uid})",
                         hint=f"chmod 600 {path}")
    if len(text) < 16:
        raise InputError(f"--token-file {path}: the token is shorter than 16 characters",
                         hint=f"python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
                              f" > {path}")
    return text


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound now so that a taken address is a clear error."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(128)
    except OSError as error:
        raise InputError(f"cannot listen on {host}:{port}: {error.strerror or error}",
                         hint="another --port, or stop what listens there") from None
    listener.set_inheritable(False)
    return listener
