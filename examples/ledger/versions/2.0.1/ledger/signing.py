"""Response integrity signatures.

2.0.1 fixes the 2.0.0 slowdown: the signing key is stretched once per
process with a fixed salt and cached, so signing is a plain HMAC.
"""

from __future__ import annotations

import functools
import hashlib
import hmac

SECRET = b"ledger-integrity-v2"
SALT = b"ledger-response-signing"
ITERATIONS = 350_000


@functools.lru_cache(maxsize=1)
def signing_key() -> bytes:
    """Stretch the service secret into the signing key (once)."""
    return hashlib.pbkdf2_hmac("sha256", SECRET, SALT, ITERATIONS)


def sign(body: bytes) -> str:
    """Hex signature of ``body``."""
    return hmac.new(signing_key(), body, hashlib.sha256).hexdigest()
