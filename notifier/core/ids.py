"""Short public identifiers for tokens and notifications."""

from __future__ import annotations

import base64
import secrets

ID_LENGTH = 12


def short_id() -> str:
    """Return 12 lowercase base32 characters (60 random bits): short, public, unguessable."""
    raw = base64.b32encode(secrets.token_bytes(8)).decode("ascii")
    return raw[:ID_LENGTH].lower()
