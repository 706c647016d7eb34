"""Token secrets: generated from a CSPRNG, recognisable by prefix, stored only as a hash.

Format: ``<prefix><48 lowercase hex>`` (192 random bits), e.g. ``ntf_`` + 48 hex. The hash is
SHA-256 of the whole secret, or HMAC-SHA-256 keyed by the optional pepper, so a copy of the
database alone cannot be used to test guesses.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

SECRET_HEX_LENGTH = 48


def generate_secret(prefix: str) -> str:
    """Return a new token secret: *prefix* and 48 hex characters from the OS CSPRNG."""
    return prefix + secrets.token_hex(SECRET_HEX_LENGTH // 2)


def hash_secret(secret: str, pepper: str | None) -> str:
    """Return the hex digest stored for *secret*: HMAC-SHA-256 with a pepper, else SHA-256."""
    data = secret.encode("utf-8")
    if pepper:
        return hmac.new(pepper.encode("utf-8"), data, hashlib.sha256).hexdigest()
    return hashlib.sha256(data).hexdigest()
