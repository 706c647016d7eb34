"""Rolling limits kept in this process's memory: requests per token, failed sign-ins per address.

Each key keeps the times of its accepted requests within the last window (at most *limit* of
them), so the limit holds over every window-long span, not just over calendar hours: a client
cannot send *limit* requests at 09:59 and *limit* more at 10:00. A refused request is not
counted. Memory is bounded by *limit* floats per key that was used within the window; keys
idle for a whole window are dropped.

:class:`FailureThrottle` counts failed authentications per client address the same way, over a
minute, and refuses an address past its limit before its next token is even looked at.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

WINDOW_S = 3600.0
FAILURE_WINDOW_S = 60.0
_SWEEP_EVERY_S = 300.0


class RateLimiter:
    """At most *limit* requests per key in any rolling window; 0 means no limit."""

    def __init__(
        self,
        limit: int,
        *,
        window_s: float = WINDOW_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self._window = window_s
        self._monotonic = monotonic
        self._accepted: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._next_sweep = monotonic() + _SWEEP_EVERY_S

    def acquire(self, key: str) -> int | None:
        """Count a request for *key*; None when allowed, else the seconds to wait (>= 1)."""
        if self.limit <= 0:
            return None
        now = self._monotonic()
        with self._lock:
            if now >= self._next_sweep:
                self._sweep(now)
            times = self._accepted.setdefault(key, deque())
            horizon = now - self._window
            while times and times[0] <= horizon:
                times.popleft()
            if len(times) >= self.limit:
                return max(1, math.ceil(times[0] - horizon))
            times.append(now)
            return None

    def _sweep(self, now: float) -> None:
        """Drop keys with no request inside the window, so idle tokens cost nothing."""
        horizon = now - self._window
        for key in [key for key, times in self._accepted.items() if times[-1] <= horizon]:
            del self._accepted[key]
        self._next_sweep = now + _SWEEP_EVERY_S


@dataclass(frozen=True, slots=True)
class Throttled:
    """A refusal of :class:`FailureThrottle`: how long to wait, and whether to log it."""

    retry_after: int  # seconds, >= 1
    announce: bool  # the first refusal of this key in a window: log it; later ones are not


class FailureThrottle:
    """At most *limit* failed authentications per key (a client address) in any rolling window.

    Past the limit, :meth:`check` refuses the key until its oldest counted failure is a window
    old; refusals are not counted, so a client that waits gets its next try on time. Only the
    first refusal in each window is announced, so a flood of guesses costs one log line a
    minute, not one per request. Memory is bounded by *limit* floats per key that failed
    within the window; keys with no failure inside it are dropped.
    """

    def __init__(
        self,
        limit: int,
        *,
        window_s: float = FAILURE_WINDOW_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self._monotonic = monotonic
        self._failures: dict[str, deque[float]] = {}
        self._announced: dict[str, float] = {}
        self._lock = threading.Lock()
        self._next_sweep = monotonic() + window_s

    def check(self, key: str) -> Throttled | None:
        """None when *key* may try to authenticate; else how long it must wait."""
        if self.limit <= 0:
            return None
        now = self._monotonic()
        with self._lock:
            if now >= self._next_sweep:
                self._sweep(now)
            failures = self._failures.get(key)
            if failures is None:
                return None
            horizon = now - self.window_s
            while failures and failures[0] <= horizon:
                failures.popleft()
            if len(failures) < self.limit:
                return None
            announced = self._announced.get(key)
            announce = announced is None or announced <= horizon
            if announce:
                self._announced[key] = now
            return Throttled(max(1, math.ceil(failures[0] - horizon)), announce)

    def fail(self, key: str) -> None:
        """Count a failed authentication of *key*."""
        if self.limit <= 0:
            return
        now = self._monotonic()
        with self._lock:
            failures = self._failures.setdefault(key, deque())
            failures.append(now)
            while len(failures) > self.limit:  # only the newest *limit* can decide
                failures.popleft()

    def _sweep(self, now: float) -> None:
        horizon = now - self.window_s
        for key in [
            key for key, times in self._failures.items() if not times or times[-1] <= horizon
        ]:
            del self._failures[key]
        for key in [key for key, at in self._announced.items() if at <= horizon]:
            del self._announced[key]
        self._next_sweep = now + self.window_s
