"""Where a notice goes: a Slack-compatible webhook, an outbox of ``.eml`` files, stdout.

Each channel is a small class with a ``label`` (safe to log) and ``deliver(notice)``,
which returns a short detail on success and raises ``DeliveryError`` (with a message that
holds no secret) on failure. ``channel_for`` picks the class from the config's ``kind``.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import sys
import tempfile
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any, Protocol, TextIO
from urllib.parse import unquote, urlsplit, urlunsplit

from controller.journal.redaction import mask_secrets
from controller.models.notify import (
    ChannelConfig,
    OutboxChannel,
    StdoutChannel,
    WebhookChannel,
    masked_url,
)
from controller.notify.notice import Notice

HEADER_MAX = 150  # Slack: a header block's text
SECTION_MAX = 3000  # Slack: a section block's text
MASK = "***"
SEGMENT_MIN = 8  # a path segment this long may be a token: masked when quoted alone
REASON_MAX = 200  # an HTTP error's text as logged: the server chooses it


class DeliveryError(Exception):
    """A channel could not deliver a notice; the message is safe to log."""


class Channel(Protocol):
    """One way of telling users."""

    @property
    def label(self) -> str:
        """How logs name the channel (never with a secret)."""
        ...

    def deliver(self, notice: Notice) -> str:
        """Send ``notice``; a short detail on success, ``DeliveryError`` on failure."""
        ...


# --- webhook ------------------------------------------------------------------------------


def slack_payload(notice: Notice) -> dict[str, Any]:
    """A Slack-compatible message: ``text`` for clients that ignore blocks, and blocks."""
    return {
        "text": f"{notice.subject}\n\n{notice.body}",
        "blocks": [
            {"type": "header",
             "text": {"type": "plain_text", "text": _cut(notice.subject, HEADER_MAX)}},
            {"type": "section",
             "text": {"type": "mrkdwn", "text": _cut(f"```{notice.body}```", SECTION_MAX)}},
            {"type": "context",
             "elements": [{"type": "mrkdwn",
                           "text": f"relctl · {notice.event} · {notice.fields.get('release')}"
                           }]},
        ],
    }


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A webhook answers or fails; following a redirect would re-send the notice elsewhere."""

    def redirect_request(self, *_args: Any, **_kwargs: Any) -> None:
        return None


class WebhookSender:
    """POST the notice as JSON to a Slack-compatible incoming webhook."""

    def __init__(self, config: WebhookChannel) -> None:
        self.config = config
        self.label = config.label

    def deliver(self, notice: Notice) -> str:
        url = self.config.resolved_url()
        if url is None:
            raise DeliveryError(f"${self.config.url_env} is not set: no webhook URL")
        target, headers = split_credentials(url)
        request = urllib.request.Request(
            target, data=json.dumps(slack_payload(notice)).encode(), method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "relctl", **headers})
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            with opener.open(request, timeout=self.config.timeout) as response:
                return f"HTTP {response.status}"
        except urllib.error.HTTPError as error:  # its reason is the server's text: scrubbed
            raise DeliveryError(scrub(f"HTTP {error.code} {error.reason}"[:REASON_MAX], url)
                                ) from None
        except (OSError, ValueError) as error:
            raise DeliveryError(scrub(_reason(error), url)) from None


def split_credentials(url: str) -> tuple[str, dict[str, str]]:
    """``https://user:pw@host/p`` -> (``https://host/p``, a Basic ``Authorization`` header):
    urllib would take the user info for part of the host name."""
    parts = urlsplit(url)
    if parts.username is None:
        return url, {}
    netloc = parts.netloc.rpartition("@")[2]
    pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
    return (urlunsplit(parts._replace(netloc=netloc)),
            {"Authorization": "Basic " + base64.b64encode(pair).decode()})


def _reason(error: Exception) -> str:
    """``connection refused``, ``timed out``: the cause without errno noise."""
    cause: object = getattr(error, "reason", None) or error  # URLError wraps the cause
    text = getattr(cause, "strerror", None) or str(cause)
    return text or type(cause).__name__


def scrub(text: str, url: str) -> str:
    """``text`` with the URL and each of its secret parts (user info, path, query), as
    written and percent-decoded, masked; then any other URL's user info and any
    ``password=`` value (``mask_secrets``)."""
    try:
        parts = urlsplit(url)
        shown = masked_url(url)
    except ValueError:  # an invalid IPv6 host: nothing of it is shown
        parts, shown = urlsplit(""), MASK
    secrets = [parts.path + (f"?{parts.query}" if parts.query else ""), parts.path,
               parts.query, parts.password or "", parts.username or ""]
    # A server may quote one part of the path (a token) alone: long segments too.
    secrets += [part for part in parts.path.split("/") if len(part) >= SEGMENT_MIN]
    secrets += [unquote(secret) for secret in secrets]
    text = text.replace(url, shown) if url else text
    for secret in sorted({s for s in secrets if len(s) > 1}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return mask_secrets(text)


# --- outbox -------------------------------------------------------------------------------


def email_message(notice: Notice, sender: str, to: list[str], now: datetime) -> EmailMessage:
    """The notice as an RFC 5322 message, ready for a mail relay."""
    message = EmailMessage()
    message["Subject"] = notice.subject
    message["From"] = sender
    message["To"] = ", ".join(to)
    message["Date"] = format_datetime(now)
    message["Message-ID"] = make_msgid("relctl", domain=_domain(sender))
    message["X-Relctl-Event"] = notice.event
    if notice.fields.get("release"):
        message["X-Relctl-Release"] = notice.fields["release"]
    message.set_content(notice.body)
    return message


def _domain(sender: str) -> str:
    domain = sender.rpartition("@")[2].strip(" >")
    return domain or socket.gethostname()


class OutboxWriter:
    """Write the notice as an ``.eml`` file, atomically: a relay never sees half a file."""

    def __init__(self, config: OutboxChannel) -> None:
        self.config = config
        self.label = config.label

    def deliver(self, notice: Notice) -> str:
        now = datetime.now(UTC)
        data = bytes(email_message(notice, self.config.sender, self.config.to, now))
        name = (f"{now:%Y%m%dT%H%M%S}-{notice.fields.get('release') or 'relctl'}-"
                f"{notice.event}-{uuid.uuid4().hex[:8]}.eml")
        try:
            return str(write_atomically(Path(self.config.dir), name, data))
        except OSError as error:
            raise DeliveryError(f"cannot write to the outbox {self.config.dir}: "
                                f"{error.strerror or error}") from None


def write_atomically(folder: Path, name: str, data: bytes) -> Path:
    """Write ``folder/name`` through a temporary file in the same folder and a rename."""
    folder.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)
        target = folder / name
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


# --- stdout -------------------------------------------------------------------------------


class StdoutPrinter:
    """Print the notice (to ``stream``: the CLI passes stderr when stdout carries JSON)."""

    label = "stdout"

    def __init__(self, _config: StdoutChannel | None = None, stream: TextIO | None = None
                 ) -> None:
        self.stream = stream

    def deliver(self, notice: Notice) -> str:
        stream = self.stream or sys.stdout
        try:
            stream.write(f"--- notice: {notice.subject}\n{notice.body}---\n")
            stream.flush()
        except (OSError, ValueError) as error:
            raise DeliveryError(f"cannot print: {error}") from None
        return "printed"


def channel_for(config: ChannelConfig, stdout: TextIO | None = None) -> Channel:
    """The channel that ``config`` describes."""
    if isinstance(config, WebhookChannel):
        return WebhookSender(config)
    if isinstance(config, OutboxChannel):
        return OutboxWriter(config)
    return StdoutPrinter(config, stdout)
