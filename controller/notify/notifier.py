"""Send one notice through every configured channel; never raise, report each delivery.

A channel that fails (a webhook that is down, an outbox on a full disk) is reported as a
failed ``Delivery`` and logged: telling users must never fail or stop a release.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TextIO

from controller.journal import Journal
from controller.models.manifest import Manifest
from controller.models.notify import NoticeEvent, NotifyConfig
from controller.notify.channels import Channel, DeliveryError, channel_for
from controller.notify.notice import (
    Notice,
    base_context,
    load_template,
    notice_context,
    render_notice,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivery:
    """How one channel fared with one notice; ``error`` holds no secret."""

    channel: str
    event: NoticeEvent
    ok: bool
    detail: str = ""
    error: str = ""

    def summary(self) -> str:
        """One line for the journal's event log."""
        outcome = f"sent ({self.detail})" if self.ok else f"FAILED: {self.error}"
        return f"notice {self.event} via {self.channel}: {outcome}"


@dataclass
class Notifier:
    """The channels of one notify config; ``Notifier(None)`` sends nothing."""

    config: NotifyConfig | None
    stdout: TextIO | None = None
    channels: list[Channel] = field(init=False)

    def __post_init__(self) -> None:
        configs = self.config.channels if self.config is not None else []
        self.channels = [channel_for(c, self.stdout) for c in configs]

    @classmethod
    def for_manifest(cls, manifest: Manifest, stdout: TextIO | None = None) -> Notifier:
        """The notifier the manifest's ``notify:`` section describes (none: silent)."""
        return cls(manifest.notify, stdout)

    def wants(self, event: NoticeEvent) -> bool:
        """True when ``event`` is configured to send a notice."""
        return self.config is not None and event in self.config.events

    def render(self, event: NoticeEvent, context: Mapping[str, str]) -> Notice:
        """The notice of ``event``: defaults for every field, overlaid with ``context``."""
        fields = {**base_context(event, datetime.now().astimezone()), **context}
        return render_notice(event, fields, load_template(event, self.config))

    def send(self, event: NoticeEvent, context: Mapping[str, str]) -> list[Delivery]:
        """Deliver ``event``'s notice through every channel; one ``Delivery`` each."""
        return self._send(event, lambda: self.render(event, context))

    def announce(self, manifest: Manifest, event: NoticeEvent, *, hosts: Sequence[str] = (),
                 reason: str = "", status: str = "") -> list[Delivery]:
        """``send`` the notice of ``manifest``'s release: what, when, interruption, contact."""
        def build() -> Notice:
            now = datetime.now().astimezone()
            return self.render(event, notice_context(manifest, event, now=now, hosts=hosts,
                                                     reason=reason, status=status))
        return self._send(event, build)

    def _send(self, event: NoticeEvent, build: Callable[[], Notice]) -> list[Delivery]:
        if not self.wants(event):
            return []
        try:
            notice = build()
        except Exception as error:  # a template must not stop a release either
            log.warning("notice %s not rendered: %s", event, error)
            return [Delivery("template", event, False, error=f"not rendered: {error}")]
        return [self._deliver(channel, notice) for channel in self.channels]

    def _deliver(self, channel: Channel, notice: Notice) -> Delivery:
        try:
            detail = channel.deliver(notice)
        except DeliveryError as error:
            message = str(error)
        except Exception as error:  # a bug in a channel: still never fail the release
            message = f"{type(error).__name__} in the {channel.label} channel"
        else:
            return Delivery(channel.label, notice.event, True, detail=detail)
        log.warning("notice %s via %s failed: %s", notice.event, channel.label, message)
        return Delivery(channel.label, notice.event, False, error=message)


def journal_deliveries(journal: Journal, release_id: int | None,
                       deliveries: list[Delivery]) -> None:
    """Write each delivery to the journal's event log (of a release, or the general one)."""
    for delivery in deliveries:
        journal.log(release_id, delivery.summary())


def notify_event(config: NotifyConfig | None, event: NoticeEvent, context: Mapping[str, str],
                 journal: Journal | None = None, release_id: int | None = None,
                 stdout: TextIO | None = None) -> list[Delivery]:
    """Send ``event``'s notice and journal every delivery; never raises.

    For callers without a release engine (failover, failback, drills): ``context`` names
    at least ``service``, ``environment``, ``reason`` and ``contact``; every other
    template field has a default (see ``controller.notify.notice.base_context``).
    """
    deliveries = Notifier(config, stdout).send(event, context)
    if journal is not None:
        try:
            journal_deliveries(journal, release_id, deliveries)
        except Exception as error:  # the journal's own failure is reported by its next write
            log.warning("notice deliveries not journaled: %s", error)
    return deliveries
