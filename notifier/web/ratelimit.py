"""Rolling limits kept in this process's memory: requests per token, failed sign-ins per address.

Each key keeps the times of its accepted requests within the last window (at most *limit* of
them), so the limit holds over every window-long span, not just over calendar hours: a client
cannot send *limit* requests at 09:59 and *limit* more at 10:00. A refused request is not
counted. Memory is bounded by *limit* floats per key that was used within the window; keys
idle for a whole window are dropped.

:class:`FailureThrottle` counts failed authentications per client address the same way, over a
minute, and refuses an address past its limit before its next token is even looked at. Both
keep their times in a :class:`RollingCount`.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, TypedDict, Unpack

WINDOW_S = 3600.0
FAILURE_WINDOW_S = 60.0
_SWEEP_EVERY_S = 300.0


class WindowOptions(TypedDict, total=False):
    """How a :class:`RollingCount` counts, when not by its defaults."""

    window_s: float
    monotonic: Callable[[], float]


class RollingCount:
    """The times of each key's latest events within a rolling window, at most *limit* kept.

    Keys with no event inside the window are dropped every :attr:`sweep_every_s`, so memory
    follows the keys in use.
    """

    window_default_s: ClassVar[float]
    sweep_every_s: ClassVar[float | None] = None  # None: once a window

    def __init__(
        self,
        limit: int,
        *,
        window_s: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window_s = self.window_default_s if window_s is None else window_s
        self._sweep_every_s = self.sweep_every_s or self.window_s
        self._monotonic = monotonic
        self._times: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._next_sweep = monotonic() + self._sweep_every_s

    def keys(self) -> frozenset[str]:
        """The keys whose times are kept now."""
        with self._lock:
            return frozenset(self._times)

    def count(self, key: str) -> int:
        """How many times of *key* are kept now."""
        with self._lock:
            return len(self._times.get(key, ()))

    def _kept(self, key: str, now: float) -> deque[float]:
        """*key*'s times inside the window ending *now*, kept from now on; lock held."""
        self._sweep_when_due(now)
        return self._prune(self._times.setdefault(key, deque(maxlen=max(1, self.limit))), now)

    def _found(self, key: str, now: float) -> deque[float] | None:
        """*key*'s times inside the window ending *now*; None for a key never counted."""
        self._sweep_when_due(now)
        times = self._times.get(key)
        return None if times is None else self._prune(times, now)

    def _prune(self, times: deque[float], now: float) -> deque[float]:
        horizon = now - self.window_s
        while times and times[0] <= horizon:
            times.popleft()
        return times

    def _sweep_when_due(self, now: float) -> None:
        if now >= self._next_sweep:
            self._sweep(now)

    def _wait(self, times: deque[float], now: float) -> int:
        """Seconds (>= 1) until the oldest of *times* leaves the window."""
        return max(1, math.ceil(times[0] - (now - self.window_s)))

    def _sweep(self, now: float) -> None:
        horizon = now - self.window_s
        for key in [key for key, times in self._times.items() if not times or times[-1] <= horizon]:
            del self._times[key]
        self._next_sweep = now + self._sweep_every_s


class RateLimiter(RollingCount):
    """At most *limit* requests per key in any rolling window; 0 means no limit."""

    window_default_s = WINDOW_S
    sweep_every_s = _SWEEP_EVERY_S

    def acquire(self, key: str) -> int | None:
        """Count a request for *key*; None when allowed, else the seconds to wait (>= 1)."""
        if self.limit <= 0:
            return None
        with self._lock:
            now = self._monotonic()
            times = self._kept(key, now)
            if len(times) >= self.limit:  # refused, and not counted
                return self._wait(times, now)
            times.append(now)
            return None


@dataclass(frozen=True, slots=True)
class Throttled:
    """A refusal of :class:`FailureThrottle`: how long to wait, and whether to log it."""

    retry_after: int  # seconds, >= 1
    announce: bool  # the first refusal of this key in a window: log it; later ones are not


class FailureThrottle(RollingCount):
    """At most *limit* failed authentications per key (a client address) in any rolling window.

    Past the limit, :meth:`check` refuses the key until its oldest counted failure is a window
    old; refusals are not counted, so a client that waits gets its next try on time. Only the
    first refusal in each window is announced, so a flood of guesses costs one log line a
    minute, not one per request. Memory is bounded by *limit* floats per key that failed
    within the window; keys with no failure inside it are dropped.
    """

    window_default_s = FAILURE_WINDOW_S

    def __init__(self, limit: int, **window: Unpack[WindowOptions]) -> None:
        super().__init__(limit, **window)
        self._announced: dict[str, float] = {}

    def check(self, key: str) -> Throttled | None:
        """None when *key* may try to authenticate; else how long it must wait."""
        if self.limit <= 0:
            return None
        now = self._monotonic()
        with self._lock:
            failures = self._found(key, now)
            if failures is None or len(failures) < self.limit:
                return None
            announced = self._announced.get(key)
            announce = announced is None or announced <= now - self.window_s
            if announce:
                self._announced[key] = now
            return Throttled(self._wait(failures, now), announce)

    def fail(self, key: str) -> None:
        """Count a failed authentication of *key*; only the newest *limit* are kept."""
        if self.limit > 0:
            with self._lock:
                self._times.setdefault(key, deque(maxlen=self.limit)).append(self._monotonic())

    def _sweep(self, now: float) -> None:
        super()._sweep(now)
        horizon = now - self.window_s
        for key in [key for key, at in self._announced.items() if at <= horizon]:
            del self._announced[key]
