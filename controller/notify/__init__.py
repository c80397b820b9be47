"""Maintenance notices to users: rendered from templates, sent through channels.

    notice.py      pure: the fields of a notice (what, when, interruption, contact, reason)
                   from the manifest, and its text from a template (built-in or the user's)
    channels.py    side effects: webhook (Slack-compatible JSON), outbox (.eml), stdout
    notifier.py    Notifier.send(event, context) -> [Delivery]: never raises;
                   notify_event(config, event, context, journal): send and journal

A failed channel is a failed ``Delivery``, logged and journaled: never a failed release.
"""

from __future__ import annotations

from controller.notify.channels import DeliveryError
from controller.notify.notice import Notice, notice_context, render_notice
from controller.notify.notifier import Delivery, Notifier, journal_deliveries, notify_event

__all__ = [
    "Delivery",
    "DeliveryError",
    "Notice",
    "Notifier",
    "journal_deliveries",
    "notice_context",
    "notify_event",
    "render_notice",
]
