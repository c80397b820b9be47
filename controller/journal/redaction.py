"""Mask secrets before anything is written to the journal or shown in a message.

``redact`` masks the values of secret-looking keys in structured data; ``mask_secrets``
masks what looks like a credential in free text (an error message quoting a URL that
did not parse): everything between ``://`` and ``@`` but a plain user name (no secret:
``postgresql://relctl:***@db/relctl``), and any ``password=`` value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

SECRET_KEY = re.compile(r"password|passwd|secret|token|key", re.IGNORECASE)
MASK = "***"
# A URL's user info: from "://" to the last "@" before a blank (a password may hold
# "/", ":" or "@"; masking a host too is the safe mistake).
_USERINFO = re.compile(r"://([^\s]*)@")
# A user name shown as it is (it is no secret: ``postgresql://USER@HOST`` in a hint).
_USER = re.compile(r"[\w.$+-]*")
# ``password=…`` in a query string or a libpq keyword string, quoted or bare.
_PASSWORD = re.compile(r"""(password\s*=\s*)('(?:[^'\\]|\\.)*'?|"[^"]*"?|[^\s&'";,]*)""",
                       re.IGNORECASE)


def redact(value: object) -> object:
    """A copy of ``value`` with the values of secret-looking keys masked, at any depth.

    A key is secret-looking when it contains password, secret, token or key (any case).
    """
    if isinstance(value, Mapping):
        return {k: _masked(k, v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def _masked(key: object, value: object) -> object:
    if value is not None and isinstance(key, str) and SECRET_KEY.search(key):
        return MASK
    return redact(value)


def to_json(value: object) -> str:
    """Redacted, compact JSON; values JSON cannot hold (paths, times) become strings."""
    return json.dumps(redact(value if value is not None else {}), default=str, sort_keys=True)


def mask_secrets(text: str) -> str:
    """``text`` with every URL's user info and every ``password=`` value masked: for
    messages that quote input which may not parse as a URL at all."""
    text = _USERINFO.sub(_masked_userinfo, text)
    return _PASSWORD.sub(rf"\g<1>{MASK}", text)


def _masked_userinfo(match: re.Match[str]) -> str:
    """``user:***`` for ``user:password``; a plain user name alone kept; else ``***``."""
    user, colon, _password = match.group(1).partition(":")
    if _USER.fullmatch(user):
        return f"://{user}{colon}{MASK if colon else ''}@"
    return f"://{MASK}@"
