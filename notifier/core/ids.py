"""Short public identifiers for tokens and notifications."""

from __future__ import annotations

import base64
import secrets

ID_LENGTH = 12


def short_id() -> str:
    """Return 12 lowercase base32 characters (60 random bits): short, public, unguessable."""
    raw = base64.b32encode(secrets.token_bytes(8)).decode("ascii")
    return raw[:ID_LENGTH].lower()


def short_ids(count: int) -> list[str]:
    """Return *count* ids as :func:`short_id` makes them, from one draw of random bytes.

    Each id is 12 base32 characters of 5 bits: 15 random bytes make two of them exactly.
    """
    raw = base64.b32encode(secrets.token_bytes(15 * ((count + 1) // 2))).decode("ascii").lower()
    return [raw[start : start + ID_LENGTH] for start in range(0, count * ID_LENGTH, ID_LENGTH)]
