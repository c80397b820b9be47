"""Response integrity signatures (new in 2.0.0).

Each response body is signed with HMAC-SHA256 under a key stretched with
PBKDF2 from the service secret, salted with the body digest.  Deriving the
key per response costs a few hundred thousand SHA-256 rounds, on every
request: this is the 2.0.0 performance regression.
"""

from __future__ import annotations

import hashlib
import hmac

SECRET = b"ledger-integrity-v2"
ITERATIONS = 350_000


def derive_key(salt: bytes) -> bytes:
    """Stretch the service secret into a signing key."""
    return hashlib.pbkdf2_hmac("sha256", SECRET, salt, ITERATIONS)


def sign(body: bytes) -> str:
    """Hex signature of ``body``."""
    key = derive_key(hashlib.sha256(body).digest())
    return hmac.new(key, body, hashlib.sha256).hexdigest()
