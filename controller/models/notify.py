"""Where maintenance notices go, as data: the manifest's ``notify:`` section.

    notify:
      channels:
        - {kind: webhook, url_env: RELCTL_SLACK_URL, timeout: 2s}   # Slack-compatible JSON
        - {kind: outbox, dir: ../../build/outbox, to: [users@example.com], from: ops@example.com}
        - {kind: stdout}
      templates_dir: notices/        # plan.txt, start.txt, ... override the built-in ones
      events: [start, success, rollback]

A webhook URL usually carries its token in the path, so it is held as a secret: it never
appears in a dump of the manifest, and messages name it as ``scheme://host/***``.
"""

from __future__ import annotations

import difflib
import os
from email.utils import parseaddr
from pathlib import Path
from string import Template
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, ConfigDict, Field, SecretStr, model_validator

from controller.models.base import ExistingDir, LocalPath, _Model
from controller.models.durations import Duration

NoticeEvent = Literal["plan", "start", "success", "rollback", "failover", "failback", "breach"]
NOTICE_EVENTS: tuple[NoticeEvent, ...] = ("plan", "start", "success", "rollback", "failover",
                                          "failback", "breach")
NOTICE_FIELDS = ("event", "service", "version", "release", "environment", "targets", "hosts",
                 "when", "window_start", "window_end", "interruption", "contact", "reason",
                 "status", "time")
"""The ``$placeholders`` a notice template may use."""
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


def masked_url(url: str) -> str:
    """``https://hooks.example.com/***``: where a webhook goes, without its secret parts
    (user info, path, query)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    where = (parts.hostname or "?") + (f":{port}" if port else "")
    return f"{parts.scheme or '?'}://{where}/***"


def _web_url(value: SecretStr) -> SecretStr:
    parts = urlsplit(value.get_secret_value())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    return value


def _address(value: str) -> str:
    _name, address = parseaddr(value)
    if "@" not in address or " " in address or not value.isprintable():
        raise ValueError(f"not an email address: {value!r}")
    return value


WebUrl = Annotated[SecretStr, AfterValidator(_web_url)]
Address = Annotated[str, AfterValidator(_address)]


class WebhookChannel(_Model):
    """An HTTP POST of a Slack-compatible JSON payload (``text`` and ``blocks``)."""

    kind: Literal["webhook"] = Field(description="Channel kind: a Slack-compatible webhook.")
    url: WebUrl | None = Field(
        None, json_schema_extra={"pattern": "^https?://"},
        description="Webhook URL (a secret: never logged). Prefer url_env in shared files.")
    url_env: str | None = Field(
        None, pattern=ENV_NAME, description="Environment variable holding the webhook URL.")
    timeout: Duration = Field(2.0, gt=0, le=60, description="Timeout of the POST: 2s, 500ms.")

    @model_validator(mode="after")
    def _one_url(self) -> WebhookChannel:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("give exactly one of 'url' and 'url_env'")
        return self

    def resolved_url(self) -> str | None:
        """The URL to post to (from the environment for ``url_env``); None if unset."""
        if self.url is not None:
            return self.url.get_secret_value()
        return os.environ.get(self.url_env or "") or None

    @property
    def label(self) -> str:
        """How messages name the channel: never with the URL's secret parts."""
        if self.url is not None:
            return f"webhook {masked_url(self.url.get_secret_value())}"
        return f"webhook ${self.url_env}"


class OutboxChannel(_Model):
    """Email-ready ``.eml`` files written to a folder that a mail relay picks up."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True,
                              allow_inf_nan=False)

    kind: Literal["outbox"] = Field(description="Channel kind: an outbox of .eml files.")
    dir: LocalPath = Field(description="Folder of the .eml files; relative to the manifest.")
    to: list[Address] = Field(min_length=1, description="Recipients, e.g. users@example.com.")
    sender: Address = Field("relctl@localhost", alias="from",
                            description="The From address of the notices.")

    @property
    def label(self) -> str:
        """How messages name the channel."""
        return f"outbox {self.dir}"


class StdoutChannel(_Model):
    """The notice printed on the controller's standard output."""

    kind: Literal["stdout"] = Field(description="Channel kind: print the notice.")

    @property
    def label(self) -> str:
        """How messages name the channel."""
        return "stdout"


ChannelConfig = Annotated[
    WebhookChannel | OutboxChannel | StdoutChannel, Field(discriminator="kind")
]


class NotifyConfig(_Model):
    """Maintenance notices to users: through which channels, with which templates."""

    channels: list[ChannelConfig] = Field(min_length=1, description="Where notices go.")
    templates_dir: ExistingDir | None = Field(
        None, description="Folder whose <event>.txt files override the built-in templates "
        "(first line: subject; then the body; $placeholders as in the built-in ones).")
    events: list[NoticeEvent] = Field(
        default_factory=lambda: list(NOTICE_EVENTS),
        description="Events that send a notice: plan, start, success, rollback, failover, "
        "failback, breach (a warranty breach not rolled back) (default: all).")
    contact: str | None = Field(
        None, min_length=1, description="Who users contact (default: owners.release_manager).")
    interruption: str | None = Field(
        None, min_length=1,
        description="Expected interruption, as users should read it (default: derived from "
        "the strategy and the change window).")

    @model_validator(mode="after")
    def _templates_known(self) -> NotifyConfig:
        if self.templates_dir is not None and self.templates_dir.is_dir():
            for path in sorted(self.templates_dir.glob("*.txt")):
                check_template(path)
        return self

    def template_path(self, event: NoticeEvent) -> Path | None:
        """The user's template for ``event``, if the templates folder holds one."""
        if self.templates_dir is None:
            return None
        path = self.templates_dir / f"{event}.txt"
        return path if path.is_file() else None


def check_template(path: Path) -> None:
    """``ValueError`` when ``path`` is no event's template or uses an unknown placeholder."""
    if path.stem not in NOTICE_EVENTS:
        raise ValueError(f"{path.name} in templates_dir is no event's template (expected "
                         f"<event>.txt, event one of {', '.join(NOTICE_EVENTS)})"
                         + _did_you_mean(path.stem, NOTICE_EVENTS, ".txt"))
    try:
        names = Template(path.read_text(encoding="utf-8")).get_identifiers()
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read template {path.name}: {error}") from error
    unknown = [name for name in names if name not in NOTICE_FIELDS]
    if unknown:
        raise ValueError(f"template {path.name} uses unknown placeholder ${unknown[0]}"
                         + _did_you_mean(unknown[0], NOTICE_FIELDS, "", "$")
                         + f"; known: {', '.join(NOTICE_FIELDS)}")


def _did_you_mean(name: str, choices: tuple[str, ...], suffix: str, prefix: str = "") -> str:
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f" (did you mean {prefix}{close[0]}{suffix}?)" if close else ""

