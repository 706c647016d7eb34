"""The one set of range limits shared by the CLI, imports, the HTTP API and the settings.

Python's ``datetime`` ends at year 9999, so a lifetime of ``100000000d`` or an expiry of
``9999-12-31T23:59:59-23:59`` overflows as soon as anything adds to it. Every duration and every
expiry we accept is held to a century, far beyond any real credential's lifetime and far inside
what the arithmetic can carry (``now + limit`` stays below year 2200 until well after 2100).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

MAX_LIFETIME = timedelta(days=36525)
"""The longest lifetime a token may have: 100 years (of 365.25 days)."""

MAX_LIFETIME_TEXT = "100 years"
""":data:`MAX_LIFETIME` as people say it, for messages."""

MAX_DURATION = MAX_LIFETIME
"""The longest duration a setting, ``--ttl``, ``--grace`` or ``expiring_within`` may give."""

EARLIEST_TIME = datetime(1970, 1, 1, tzinfo=UTC)
"""The earliest instant we accept from outside (cursors, imported creation times)."""


def duration_in_range(value: timedelta) -> bool:
    """Whether *value* is within :data:`MAX_DURATION` either way."""
    return -MAX_DURATION <= value <= MAX_DURATION


def time_in_range(value: datetime, *, now: datetime) -> bool:
    """Whether the aware *value* lies between 1970 and a century after *now*.

    A time whose UTC offset pushes it past year 9999 (``9999-12-31T23:59:59-23:59``) fails the
    comparison safely: comparing aware datetimes does not overflow, only converting them does.
    """
    return EARLIEST_TIME <= value <= now + MAX_LIFETIME
