"""How a journal is named (``--journal``, ``$RELCTL_JOURNAL``), and how it is shown.

    /var/lib/relctl/journal.sqlite     an SQLite file (a bare path)
    sqlite:/var/lib/relctl/j.sqlite    the same, said explicitly (``sqlite:///abs`` too)
    postgresql://relctl:PW@db/relctl   a PostgreSQL database (``postgres://`` too)

A URL's password is a secret: ``mask_url`` replaces it (and a ``password=`` query
parameter) with ``***`` wherever a journal is named in a message, a log or the journal.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from controller.journal.redaction import mask_secrets

SQLITE_PREFIX = "sqlite:"
MASK = "***"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_PASSWORD_PARAM = re.compile(r"password=([^&#\s]*)", re.IGNORECASE)


def split_target(target: str | Path) -> tuple[str, str]:
    """The backend kind a journal target names, and what that backend opens."""
    if isinstance(target, Path):
        return "sqlite", str(target)
    if target.startswith(SQLITE_PREFIX):
        rest = target[len(SQLITE_PREFIX):]
        return "sqlite", rest[2:] if rest.startswith("//") else rest
    scheme = _SCHEME.match(target)
    if scheme:
        return scheme.group(1).lower(), target
    return "sqlite", target


def mask_url(text: str) -> str:
    """``text`` with a URL's password replaced by ``***`` (a path comes back as it was)."""
    if not _SCHEME.match(text):
        return text
    try:
        parts = urlsplit(text)
        netloc = parts.netloc
        if parts.password is not None:
            userinfo, _, hostport = netloc.rpartition("@")
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}:{MASK}@{hostport}"
        query = urlencode([(k, MASK if k.lower() == "password" else v)
                           for k, v in parse_qsl(parts.query, keep_blank_values=True)],
                          safe="*")
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:  # unparsable (an IPv6 address without its "]"): mask by pattern
        return mask_secrets(text)


def url_secrets(url: str) -> list[str]:
    """The password of ``url`` as written and as decoded, and every ``password=`` value,
    found by pattern: a URL libpq or urllib cannot parse still has its password found
    (an error quoting the bad part of it is masked with these)."""
    found: list[str] = []
    scheme = _SCHEME.match(url)
    if scheme:
        userinfo, at, _rest = url[scheme.end():].rpartition("@")
        if at and ":" in userinfo:
            found.append(userinfo.split(":", 1)[1])
    found += [m.group(1) for m in _PASSWORD_PARAM.finditer(url)]
    found += [unquote(secret) for secret in found]
    return sorted({s for s in found if s}, key=len, reverse=True)


def describe(target: str | Path) -> str:
    """How messages name a journal: its path, or its URL with the password masked."""
    kind, where = split_target(target)
    return where if kind == "sqlite" else mask_url(where)
