"""Where the core reads the time: injected, so tests choose it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Tell the current time, timezone-aware in UTC."""

    def now(self) -> datetime:
        """Return the current time in UTC."""
        ...


class SystemClock:
    """The wall clock."""

    def now(self) -> datetime:
        """Return the current time in UTC."""
        return datetime.now(UTC)


class FixedClock:
    """A clock that stands still until moved; shipped for tests of code that takes a Clock."""

    def __init__(self, at: datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("FixedClock needs a timezone-aware time")
        self._at = at.astimezone(UTC)

    def now(self) -> datetime:
        """Return the time the clock is set to."""
        return self._at

    def advance(self, by: timedelta) -> None:
        """Move the clock forward by *by*."""
        self._at += by

    def set(self, at: datetime) -> None:
        """Set the clock to *at*."""
        self._at = at.astimezone(UTC)
