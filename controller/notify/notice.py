"""A maintenance notice as data: its fields, from the manifest, and its text, from a template.

A template is plain text with ``$placeholders`` (``string.Template``): the first line is
the subject, every line after it the body. The built-in ones live in ``templates/``; a
``templates_dir`` in the notify config overrides them file by file (``start.txt``, ...).
Substitution is safe: a value holding ``$`` is never expanded again, and a placeholder
with no value is left as written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path
from string import Template

from controller.models.manifest import ChangeWindow, Manifest
from controller.models.notify import NOTICE_FIELDS, NoticeEvent, NotifyConfig

STATUS: dict[NoticeEvent, str] = {
    "plan": "planned",
    "start": "in progress",
    "success": "completed",
    "rollback": "rolled back to the previous version",
    "failover": "running on the backup site",
    "failback": "back on the primary site",
    "breach": "degraded: operations are fixing it",
}
INTERRUPTION: dict[NoticeEvent, str] = {
    "success": "none: the service runs normally again",
    "rollback": "short interruptions are possible while the previous version is restored",
    "failover": "a short interruption while traffic moves to the backup site",
    "failback": "a short interruption while traffic moves back to the primary site",
    "breach": "errors or slow answers are possible until a fix is released",
}


@dataclass(frozen=True)
class Notice:
    """One rendered notice: what every channel sends."""

    event: NoticeEvent
    subject: str
    body: str
    fields: Mapping[str, str]


def when(moment: datetime) -> str:
    """How notices write a time: ``2026-12-01 22:00+01:00``."""
    return moment.isoformat(timespec="minutes").replace("T", " ")


def base_context(event: NoticeEvent, now: datetime) -> dict[str, str]:
    """Every field a template may use, with the values known without a manifest."""
    fields = dict.fromkeys(NOTICE_FIELDS, "")
    fields.update(event=event, status=STATUS[event], time=when(now), when=when(now),
                  interruption=INTERRUPTION.get(event, ""), reason="not given")
    return fields


def notice_context(manifest: Manifest, event: NoticeEvent, *, now: datetime,
                   hosts: Sequence[str] = (), reason: str = "",
                   status: str = "") -> dict[str, str]:
    """The fields of ``event``'s notice for ``manifest``: what, when, interruption, contact."""
    config, window = manifest.notify, manifest.window
    fields = base_context(event, now)
    fields.update(
        service=manifest.service, version=manifest.version, release=manifest.release,
        environment=manifest.environment, targets=manifest.targets, hosts=", ".join(hosts),
        when=_when(event, window, now),
        interruption=_interruption(manifest, event, len(hosts), config),
        contact=(config.contact if config and config.contact
                 else manifest.owners.release_manager),
    )
    if window is not None:
        fields.update(window_start=when(window.start), window_end=when(window.end))
    if reason:
        fields["reason"] = reason
    if status:
        fields["status"] = status
    return fields


def _when(event: NoticeEvent, window: ChangeWindow | None, now: datetime) -> str:
    if event == "plan":
        if window is None:
            return "to be announced (no change window yet)"
        return f"from {when(window.start)} to {when(window.end)}"
    if event == "start" and window is not None:
        return f"now ({when(now)}), until {when(window.end)} at the latest"
    return f"now ({when(now)})" if event == "start" else when(now)


def _interruption(manifest: Manifest, event: NoticeEvent, host_count: int,
                  config: NotifyConfig | None) -> str:
    """What users should expect; the config's own words win over the derived ones."""
    if config is not None and config.interruption:
        return config.interruption
    if event not in ("plan", "start"):
        return INTERRUPTION.get(event, "")
    if host_count == 1:
        return "the service is unavailable while its only host is updated"
    strategy = manifest.strategy
    batch = strategy.batch_size if isinstance(strategy.batch_size, str) else (
        f"{strategy.batch_size} host{'s' if strategy.batch_size != 1 else ''}")
    text = (f"rolling update, canary first ({strategy.canary} host"
            f"{'s' if strategy.canary != 1 else ''}), then {batch} at a time: no full outage "
            "expected; requests may be slower while a host is updated")
    if manifest.irreversible_items():
        text += "; the stored data is converted and cannot be converted back"
    return text


def builtin_template(event: NoticeEvent) -> str:
    """The template relctl ships for ``event``."""
    return (resources.files("controller.notify") / "templates" / f"{event}.txt").read_text(
        encoding="utf-8")


def load_template(event: NoticeEvent, config: NotifyConfig | None) -> str:
    """The user's template for ``event`` if the config names one, else the built-in one."""
    path = config.template_path(event) if config is not None else None
    if path is not None:
        try:
            return Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            pass  # deleted or broken since the manifest loaded: still tell the users
    return builtin_template(event)


def render_notice(event: NoticeEvent, fields: Mapping[str, str], template: str) -> Notice:
    """Fill ``template`` with ``fields``: its first line is the subject, the rest the body."""
    text = Template(template).safe_substitute(fields)
    subject, _, body = text.partition("\n")
    return Notice(event, " ".join(subject.split()), body.strip("\n") + "\n", dict(fields))
