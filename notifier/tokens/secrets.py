"""Token secrets: generated from a CSPRNG, recognisable by prefix and checksum, kept as a hash.

Format: ``<prefix><40 hex random><8 hex checksum>``, e.g. ``ntf_`` + 48 lowercase hex. The
random part holds 160 bits from ``secrets``; the checksum is the CRC-32 of the prefix and the
random part. A secret scanner can match ``ntf_[0-9a-f]{48}`` and confirm a hit by its checksum;
``tokens verify`` refuses a mistyped token before any database lookup.

Only a hash is stored: SHA-256 of the whole secret, or HMAC-SHA-256 keyed by the optional
pepper, so that a copy of the database alone cannot be used to test guesses. Verification
looks the hash up through its unique index, then compares with ``hmac.compare_digest``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import zlib

RANDOM_HEX = 40
CHECKSUM_HEX = 8
SECRET_HEX_LENGTH = RANDOM_HEX + CHECKSUM_HEX
_HEX = re.compile(r"[0-9a-f]+")


def _checksum(prefix: str, random_hex: str) -> str:
    return f"{zlib.crc32((prefix + random_hex).encode('ascii')) & 0xFFFFFFFF:08x}"


def generate_secret(prefix: str) -> str:
    """Return a new token secret: *prefix*, 40 random hex characters and an 8-hex checksum."""
    random_hex = secrets.token_hex(RANDOM_HEX // 2)
    return prefix + random_hex + _checksum(prefix, random_hex)


def has_our_shape(secret: str, prefix: str) -> bool:
    """Say whether *secret* claims to be one of ours: the prefix and 48 lowercase hex."""
    body = secret.removeprefix(prefix)
    return (
        secret.startswith(prefix)
        and len(body) == SECRET_HEX_LENGTH
        and _HEX.fullmatch(body) is not None
    )


def checksum_ok(secret: str, prefix: str) -> bool:
    """Say whether a secret of our shape carries the right checksum (a typo does not)."""
    if not has_our_shape(secret, prefix):
        return False
    body = secret.removeprefix(prefix)
    return hmac.compare_digest(body[RANDOM_HEX:], _checksum(prefix, body[:RANDOM_HEX]))


def hash_secret(secret: str, pepper: str | None) -> str:
    """Return the hex digest stored for *secret*: HMAC-SHA-256 with a pepper, else SHA-256."""
    data = secret.encode("utf-8")
    if pepper:
        return hmac.new(pepper.encode("utf-8"), data, hashlib.sha256).hexdigest()
    return hashlib.sha256(data).hexdigest()


def fingerprint(secret: str) -> str:
    """A short name for a presented secret in logs: not the secret, nor a piece of it.

    It is a truncated SHA-256 (no pepper), so the same wrong token shows the same fingerprint
    in every log line, and nothing of the secret's own characters is revealed.
    """
    return "sha256:" + hashlib.sha256(secret.encode("utf-8")).hexdigest()[:12]
